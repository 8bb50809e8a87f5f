"""Pieces shared by the format readers: feature files, split assembly, final checks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dglmm.data.dataset import SPLITS, Dataset
from dglmm.data.errors import DataError
from dglmm.data.validate import check_features, check_splits_nonempty, require_file

FEATURE_SUFFIX = "_feat.npy"


def feature_files(directory: Path, only: Iterable[str] | None = None) -> dict[str, Path]:
    """``{modality: path}`` for every ``<modality>_feat.npy`` in ``directory`` (or only the named ones)."""
    found = {p.name[: -len(FEATURE_SUFFIX)]: p for p in sorted(directory.glob(f"*{FEATURE_SUFFIX}"))}
    if only is None:
        return found
    only = list(only)
    missing = [m for m in only if m not in found]
    if missing:
        raise DataError(directory, f"no feature file for modality {', '.join(missing)} "
                                   f"(looked for {', '.join(m + FEATURE_SUFFIX for m in missing)})")
    return {m: found[m] for m in only}


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read .npy file: {' '.join(str(exc).split())}") from exc


def load_features(directory: Path, n_items: int, fixed: str | None = None,
                  only: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Load modality features as float32 and settle the item count.

    ``n_items`` is the count implied by the interactions (max id + 1); feature files with more rows raise
    it, so items with features but no interaction stay as cold items. A ``fixed`` count (given with its
    reason, e.g. "item2id.json lists 7050 items") cannot change. Every file must have exactly that many rows.
    """
    paths = feature_files(directory, only)
    raw = {m: _load_npy(p) for m, p in paths.items()}
    rows = {m: a.shape[0] for m, a in raw.items() if a.ndim == 2}
    total = n_items if fixed or not rows else max(n_items, *rows.values())
    if fixed:
        why = fixed
    elif total > n_items:
        why = f"{paths[max(rows, key=rows.get)].name} has {total} rows"
    else:
        why = f"interactions use item ids up to {n_items - 1}"
    feats = {m: check_features(a, paths[m], total, why) for m, a in raw.items()}
    return feats, total


def splits_from_labels(pairs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """``{"train": ..., "valid": ..., "test": ...}`` from pairs and their 0/1/2 labels."""
    return {name: np.ascontiguousarray(pairs[labels == k], dtype=np.int64) for k, name in enumerate(SPLITS)}


def finish(dataset: Dataset) -> Dataset:
    """Final checks every reader runs: non-empty splits and :meth:`Dataset.validate`."""
    check_splits_nonempty({s: dataset.split(s) for s in SPLITS}, dataset.source)
    dataset.validate()
    return dataset


def natural_order(tokens: np.ndarray) -> np.ndarray:
    """Distinct tokens sorted numerically when all are integers, otherwise as strings."""
    unique = np.unique(np.asarray(tokens, dtype=str))
    try:
        numbers = unique.astype(np.int64)
    except ValueError:
        return unique
    return unique[np.argsort(numbers, kind="stable")]


def find_inter_file(path: str | Path) -> Path:
    """The ``.inter`` file at ``path`` or the one inside directory ``path`` (``<dirname>.inter`` if several)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        preferred = [p for p in found if p.stem == path.name]
        if len(found) == 1 or preferred:
            return (preferred or found)[0]
        if not found:
            raise DataError(path, "no .inter file in directory")
        raise DataError(path, f"several .inter files ({', '.join(p.name for p in found)}); pass one")
    return require_file(path)
