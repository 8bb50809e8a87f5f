"""One entry point, :func:`load_dataset`: a dataset name or a path in any supported layout."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.data.formats import read_kgat, read_lattice_json, read_mmrec, read_recbole
from dglmm.data.formats.common import find_inter_file
from dglmm.data.synthetic import make_synthetic
from dglmm.errors import InputError

__all__ = ["FORMATS", "data_roots", "detect_format", "load_dataset", "read_kgat", "read_lattice_json",
           "read_mmrec", "read_recbole", "resolve_name"]

FORMATS: dict[str, Callable[..., Dataset]] = {
    "mmrec": read_mmrec,
    "lattice": read_lattice_json,
    "kgat": read_kgat,
    "recbole": read_recbole,
}
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOKED_FOR = ("train.json + val.json + test.json (LATTICE json), train.txt + test.txt (KGAT), "
              "<name>.inter with header userID/itemID/x_label (MMRec) or name:type columns (RecBole)")


def data_roots() -> list[Path]:
    """Folders searched for named datasets: ``$DGLMM_DATA``, then ``../shared/data`` from the repo and cwd."""
    roots = [Path(os.environ["DGLMM_DATA"])] if os.environ.get("DGLMM_DATA") else []
    return [*roots, REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def resolve_name(name: str) -> Path:
    """The folder of a named dataset (e.g. ``baby``, ``tiktok``) in :func:`data_roots`; when none has it, a
    :class:`DataError` listing each searched folder once and the names found there."""
    roots = list(dict.fromkeys(root.resolve() for root in data_roots()))  # the repo's and the cwd's may be one
    for root in roots:
        if (root / name).exists():
            return root / name
    known = sorted({p.name for root in roots if root.is_dir() for p in root.iterdir()
                    if p.is_dir() and not p.name.startswith(".")})
    raise DataError(name, f"no such file or dataset; known names: {', '.join(['synthetic', *known])} "
                          f"(folders in {', '.join(map(str, roots))})")


def _inter_format(inter: Path) -> str:
    with open(inter, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    if all(":" in column for column in header):
        return "recbole"
    if {"userID", "itemID"} <= set(header):
        return "mmrec"
    raise DataError(inter, f"header {' '.join(header)!r} is neither MMRec (userID itemID ... x_label) "
                           "nor RecBole (name:type columns)")


def detect_format(path: str | Path) -> str:
    """Name of the layout at ``path`` (a key of :data:`FORMATS`) from the files present."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    if path.is_file():
        if path.suffix != ".inter":
            raise DataError(path, f"unknown file type; expected a directory with {LOOKED_FOR}")
        return _inter_format(path)
    if (path / "train.json").exists():
        return "lattice"
    if (path / "train.txt").exists() and (path / "test.txt").exists():
        return "kgat"
    if any(path.glob("*.inter")):
        return _inter_format(find_inter_file(path))
    raise DataError(path, f"no known dataset layout; looked for {LOOKED_FOR}")


def load_dataset(path_or_name: str | Path, format: str | None = None, **options: Any) -> Dataset:
    """Load a dataset by name (``synthetic``, ``baby``, ``tiktok``, ...) or path; options go to the reader.

    ``synthetic`` calls :func:`~dglmm.data.synthetic.make_synthetic`. A path that does not exist is looked up
    as a name in :func:`data_roots`. The layout is detected from the files present unless ``format`` names it.
    """
    if str(path_or_name) == "synthetic":
        dataset = make_synthetic(**options)
        if not options:  # the name alone reproduces it (run folders record ``source`` to reload the data)
            dataset.source = "synthetic"
        return dataset
    path = Path(path_or_name)
    if not path.exists():
        if len(path.parts) != 1:
            raise DataError(path, "no such file or directory")
        path = resolve_name(str(path_or_name))
    kind = format or detect_format(path)
    if kind not in FORMATS:
        raise InputError(f"unknown format {kind!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[kind](path, **options)
