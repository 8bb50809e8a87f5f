"""Small file helpers: output folders (:func:`make_folder`), atomic writes so that an interrupted run never leaves half a result file, the one
function that reads checkpoints (:func:`load_checkpoint`, tensors and plain containers only) and the one that
reads a run folder's ``config.yaml`` (:func:`read_run_config`), and the one notion of a run folder that every
command accepts (:func:`seed_run_dirs`, :func:`resolve_run_dir`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from dglmm.errors import CheckpointError, InputError


def make_folder(path: Path | str) -> Path:
    """``mkdir -p path``; a path that cannot be a folder (a file on the way, no permission, disk full) is one
    :class:`InputError` line naming it, never a traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocking = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocking} is a file, not a folder" if blocking is not None else (exc.strerror or str(exc))
        raise InputError(f"{path}: cannot create the folder ({why})") from None
    return path


def _atomic(path: Path, write) -> None:
    path = Path(path)
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    _atomic(Path(path), lambda fh: fh.write((json.dumps(data, indent=2, default=_jsonable) + "\n").encode()))


def write_text(path: Path | str, text: str) -> None:
    _atomic(Path(path), lambda fh: fh.write(text.encode()))


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write bytes atomically (e.g. an ``.npy`` file serialised in memory)."""
    _atomic(Path(path), lambda fh: fh.write(data))


def write_npz(path: Path | str, arrays: dict[str, Any]) -> None:
    """``np.savez`` atomically: numeric arrays only (read back with ``np.load(allow_pickle=False)``)."""
    import numpy as np

    plain = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in plain.items() if v.dtype == object]
    if bad:
        raise TypeError(f"write_npz: arrays {bad} are not numeric")
    _atomic(Path(path), lambda fh: np.savez(fh, **plain))


def save_torch(path: Path | str, obj: Any) -> None:
    """``torch.save`` atomically."""
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ``checkpoint.pt`` / ``best.pt`` with ``torch.load(weights_only=True)``.

    Only tensors, numbers, strings, None and dicts / lists / tuples of them are unpickled, so a crafted file
    cannot run code.  Every failure (missing, truncated, corrupt, foreign objects, not a dict) is a one-line
    :class:`~dglmm.errors.CheckpointError` that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read a user file is a problem of that file
        text = " ".join(str(exc).split())
        if "Weights only load failed" in text or "Unsupported" in text:
            raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain containers "
                                  "(dglmm reads checkpoints with weights_only=True)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated?): "
                              f"{type(exc).__name__}: {text[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a dglmm checkpoint (expected a dict, got {type(state).__name__})")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path | str, dataset: str) -> None:
    """``model.load_state_dict(state["model"])``, a state that does not fit (a run trained on data of other sizes,
    or another model) being one :class:`~dglmm.errors.CheckpointError` line naming ``path`` and ``dataset``."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        text = " ".join(str(exc).split())
        sizes = "size mismatch" in text
        reason = "the run was trained on data of other sizes" if sizes else "another model or version?"
        raise CheckpointError(f"{path}: does not fit the model rebuilt on dataset {dataset!r} ({reason}): "
                              f"{text[:160]}") from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_run_config(run_dir: Path | str) -> dict[str, Any]:
    """The ``config.yaml`` of a run folder; missing, malformed or not a dglmm run config: an :class:`InputError`
    naming the file."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {run_dir} a run folder?)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(config, dict) or "model_name" not in config:
        raise InputError(f"{path}: not a dglmm run config (no model_name)")
    return config


def _seed_folders(path: Path, marker: str) -> list[Path]:
    folders = [p for p in path.glob("seed*") if p.name[4:].isdigit() and (p / marker).is_file()]
    return sorted(folders, key=lambda p: int(p.name[4:]))


def seed_run_dirs(path: Path | str, marker: str = "config.yaml") -> list[Path]:
    """The single-seed run folders behind ``path``, in seed order.

    ``path`` may be a single-seed run folder (it holds ``config.yaml``), the folder ``dglmm train`` prints (its
    ``seed*`` sub-folders), or a grid's folder (``point*/seed*``), which stands for the point selected on
    validation as recorded in its ``summary.json``.  Anything else is an :class:`InputError` naming ``path``.
    ``marker`` is the file that makes a folder a run (``dglmm compare`` looks for the per-user test results).
    """
    path = Path(path)
    if (path / marker).is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: not found (expected a run folder written by dglmm train)")
    seeds = _seed_folders(path, marker)
    if seeds:
        return seeds
    if any(path.glob(f"point*/seed*/{marker}")):
        return _seed_folders(path / f"point{_selected_point(path)}", marker)
    raise InputError(f"{path}: not a run folder (no {marker} here or in seed*/)")


def _selected_point(grid_dir: Path) -> int:
    summary_path = grid_dir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{grid_dir}: a grid whose selection is not written yet (no summary.json); "
                         f"name one point's run, e.g. {grid_dir / 'point0' / 'seed0'}")
    try:
        summary = json.loads(summary_path.read_text())
        return [entry["point"] for entry in summary["grid"]].index(summary["selected"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{summary_path}: not a dglmm grid summary ({type(exc).__name__})") from None


def resolve_run_dir(path: Path | str) -> Path:
    """The one single-seed run folder behind ``path`` (see :func:`seed_run_dirs`); a folder that holds several
    seeds is an :class:`InputError` that names them, so the user picks one."""
    runs = seed_run_dirs(path)
    if len(runs) > 1:
        names = ", ".join(run.name for run in runs)
        raise InputError(f"{path}: holds {len(runs)} seeds ({names}); name one, e.g. {runs[0]}")
    return runs[0]


def write_chunks(path: Path | str, chunks: Any) -> None:
    """Write an iterable of ``bytes`` atomically, one chunk after the other (a large output never sits whole
    in memory, and an interruption leaves no partial file)."""
    def write(fh) -> None:
        for chunk in chunks:
            fh.write(chunk)

    _atomic(Path(path), write)
