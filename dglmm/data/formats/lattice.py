"""LATTICE / MICRO layout: ``train.json``, ``val.json``, ``test.json`` as ``{"user id": [item ids]}``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.data.formats.common import finish, load_features, splits_from_labels
from dglmm.data.validate import (
    check_id_span,
    check_ids_below,
    check_non_negative,
    drop_duplicate_pairs,
    require_dir,
    require_file,
)

LATTICE_FILES = ("train.json", "val.json", "test.json")


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text: {exc.reason}") from exc


def read_user_lists(path: Path) -> np.ndarray:
    """(user, item) pairs of one ``{"user id": [item ids]}`` file."""
    data = _load_json(require_file(path))
    if not isinstance(data, dict):
        raise DataError(path, 'expected an object {"user id": [item ids]}')
    bad_key = next((k for k in data if not k.strip().lstrip("+-").isdigit()), None)
    if bad_key is not None:
        raise DataError(path, f"user id {bad_key!r} is not an integer")
    bad_value = next((k for k, v in data.items() if not isinstance(v, list)), None)
    if bad_value is not None:
        raise DataError(path, f"user {bad_value}: expected a list of item ids")
    try:
        users = np.array([int(k) for k in data], dtype=np.int64)
    except OverflowError:
        raise DataError(path, "a user id does not fit in 64 bits") from None
    check_non_negative(users, path, "user id")
    flat = list(chain.from_iterable(data.values()))
    bad = next((i for i in flat if type(i) is not int), None)
    if bad is not None:
        raise DataError(path, f"item id {bad!r} is not an integer")
    try:
        items = np.array(flat, dtype=np.int64)
    except OverflowError:
        raise DataError(path, "an item id does not fit in 64 bits") from None
    check_non_negative(items, path, "item id")
    lengths = np.array([len(v) for v in data.values()], dtype=np.int64)
    return np.stack([np.repeat(users, lengths), items], axis=1)


def _map_size(path: Path) -> int | None:
    if not path.exists():
        return None
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(path, 'expected an object {"original id": index}')
    return len(data)


def read_lattice_json(directory: str | Path, modalities: Iterable[str] | None = None) -> Dataset:
    """Read the LATTICE / MICRO json layout (``val.json`` is the validation split).

    ``<modality>_feat.npy`` files are optional. When ``user2id.json`` / ``item2id.json`` exist their sizes give
    ``n_users`` / ``n_items`` (so items without any interaction are kept) and every id must be below them;
    otherwise the counts are max id + 1 (``n_items`` grown to the feature rows, as for MMRec).
    Duplicate pairs are dropped with a warning, keeping the earliest split.
    """
    directory = require_dir(directory)
    parts = [read_user_lists(directory / name) for name in LATTICE_FILES]
    n_rows = sum(len(p) for p in parts)
    for part, name in zip(parts, LATTICE_FILES, strict=True):
        check_id_span(part[:, 0], n_rows, directory / name, "user id")
        check_id_span(part[:, 1], n_rows, directory / name, "item id")
    labels = np.concatenate([np.full(len(p), k, dtype=np.int8) for k, p in enumerate(parts)])
    pairs, labels = drop_duplicate_pairs(np.concatenate(parts), labels, directory)
    n_users, n_items = (_map_size(directory / f) for f in ("user2id.json", "item2id.json"))
    for part, name in zip(parts, LATTICE_FILES, strict=True):
        if n_users is not None:
            check_ids_below(part[:, 0], n_users, directory / name, "user id", f"user2id.json has {n_users} users")
        if n_items is not None:
            check_ids_below(part[:, 1], n_items, directory / name, "item id", f"item2id.json has {n_items} items")
    if n_users is None:
        n_users = int(pairs[:, 0].max()) + 1 if len(pairs) else 0
    fixed = f"item2id.json lists {n_items} items" if n_items is not None else None
    if n_items is None:
        n_items = int(pairs[:, 1].max()) + 1 if len(pairs) else 0
    feats, n_items = load_features(directory, n_items, fixed=fixed, only=modalities)
    dataset = Dataset(name=directory.name, n_users=n_users, n_items=n_items, modalities=feats,
                      source=str(directory), **splits_from_labels(pairs, labels))
    return finish(dataset)
