"""Small file helpers: atomic writes so that an interrupted run never leaves half a result file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def save_torch(path: Path | str, obj: Any) -> None:
    """``torch.save`` atomically."""
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
