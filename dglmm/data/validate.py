"""Checks shared by the readers: each failure is a one-line :class:`DataError` naming the file and the problem."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from dglmm.data.dataset import SPLITS
from dglmm.data.errors import DataError, DataWarning


def require_dir(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; DataError if it is not an existing directory."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such directory")
    if not path.is_dir():
        raise DataError(path, "expected a directory")
    return path


def require_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; DataError if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing file" if not path.exists() else "expected a file")
    return path


def read_table(path: Path) -> pd.DataFrame:
    """Read a tab-separated file with a header as strings; the index is the 1-based line number of each row.

    Blank lines are skipped; a row with too many fields is a DataError naming its line.
    """
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(path, "empty file") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed file: {_one_line(exc)}") from exc
    frame.index = frame.index + 2  # line 1 is the header
    blank = (frame == "").all(axis=1)
    return frame[~blank.to_numpy()]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def require_columns(found: Iterable[str], needed: Iterable[str], source: Path) -> None:
    """DataError listing the columns in ``needed`` that are not in ``found``."""
    found = list(found)
    missing = [c for c in needed if c not in found]
    if missing:
        raise DataError(source, f"missing column(s) {', '.join(missing)}; header has {', '.join(found)}")


def parse_int_column(values: pd.Series, source: Path, column: str) -> np.ndarray:
    """Parse a string column of non-negative integer ids; the index of ``values`` gives line numbers."""
    text = values.astype(str).str.strip()
    ok = text.str.fullmatch(r"[+-]?\d+").fillna(False).to_numpy(dtype=bool)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise DataError(source, f"line {values.index[bad]}: {column} {text.iloc[bad]!r} is not an integer")
    ids = text.to_numpy().astype(np.int64)
    check_non_negative(ids, source, column, lines=values.index)
    return ids


def parse_float_column(values: pd.Series, source: Path, column: str) -> np.ndarray:
    """Parse a string column of finite floats (e.g. ratings, timestamps)."""
    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(source, f"line {values.index[i]}: {column} {values.iloc[i]!r} is not a finite number")
    return numbers


def check_non_negative(ids: np.ndarray, source: Path, what: str, lines: Iterable[int] | None = None) -> None:
    """DataError if any id is negative (naming the line when ``lines`` is given)."""
    if len(ids) and ids.min() < 0:
        i = int(np.argmin(ids))
        where = f"line {list(lines)[i]}: " if lines is not None else ""
        raise DataError(source, f"{where}negative {what} {int(ids[i])}")


def check_ids_below(ids: np.ndarray, bound: int, source: Path, what: str, why: str) -> None:
    """DataError if an id is ``>= bound``; ``why`` explains where the bound comes from."""
    if len(ids) and ids.max() >= bound:
        raise DataError(source, f"{what} {int(ids.max())} out of range: {why}")


# Ids index embedding tables (``n = max id + 1`` rows), so the id space must be dense.  A file with R rows can
# name at most R distinct users (or items); ids up to ID_SPAN_FACTOR * R + ID_SPAN_MARGIN leave room for gaps
# (filtered data that kept its original ids, cold items described only by feature files) while refusing an id
# column that was never renumbered (e.g. raw 64-bit ids), before anything of size max id is allocated.  At
# 64-d float32 the margin alone costs 25 MB per table.
ID_SPAN_FACTOR = 10
ID_SPAN_MARGIN = 100_000


def check_id_span(ids: np.ndarray, n_rows: int, source: str | Path, what: str,
                  lines: Iterable[int] | None = None) -> None:
    """DataError if ``max(ids) >= ID_SPAN_FACTOR * n_rows + ID_SPAN_MARGIN`` (see the comment above)."""
    if len(ids) == 0:
        return
    bound = ID_SPAN_FACTOR * max(int(n_rows), 0) + ID_SPAN_MARGIN
    top = int(np.argmax(ids))
    if int(ids[top]) >= bound:
        where = f"line {list(lines)[top]}: " if lines is not None else ""
        raise DataError(source, f"{where}{what} {int(ids[top])} is far beyond the {n_rows} rows of the data "
                                f"(ids index embedding rows, so they must be below {ID_SPAN_FACTOR} x rows + "
                                f"{ID_SPAN_MARGIN} = {bound}); renumber the ids densely from 0")


def unique_pair_rows(pairs: np.ndarray, labels: np.ndarray, source: str | Path) -> np.ndarray:
    """Sorted indices of the rows to keep when repeated (user, item) pairs are dropped, with a warning.

    ``labels`` holds 0/1/2 = train/valid/test per pair; the copy in the earliest split is kept, and among
    equal labels the first row.
    """
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    key = pairs[:, 0] * (int(pairs[:, 1].max()) + 1) + pairs[:, 1]
    order = np.lexsort((np.arange(len(pairs)), labels, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = np.sort(order[first])
    n_dropped = len(pairs) - len(keep)
    if n_dropped:
        warnings.warn(f"{source}: dropped {n_dropped} duplicate (user, item) interaction(s), keeping the one "
                      "in the earliest split", DataWarning, stacklevel=4)
    return keep


def drop_duplicate_pairs(pairs: np.ndarray, labels: np.ndarray, source: str | Path,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` and ``labels`` without repeated pairs; see :func:`unique_pair_rows`."""
    keep = unique_pair_rows(pairs, labels, source)
    return pairs[keep], labels[keep]


def drop_duplicate_rows(rows: np.ndarray, source: str | Path, what: str) -> np.ndarray:
    """Drop repeated rows of an int array (e.g. KG triples) with a warning; first occurrences kept in order."""
    if len(rows) == 0:
        return rows
    _, first = np.unique(rows, axis=0, return_index=True)
    n_dropped = len(rows) - len(first)
    if n_dropped:
        warnings.warn(f"{source}: dropped {n_dropped} duplicate {what}", DataWarning, stacklevel=3)
    return rows[np.sort(first)]


def check_splits_nonempty(splits: dict[str, np.ndarray], source: str | Path) -> None:
    """Every split must hold at least one interaction."""
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise DataError(source, f"the {name} split is empty")


def check_features(feat: np.ndarray, source: Path, n_items: int, why: str) -> np.ndarray:
    """A 2-D, finite float32 copy of ``feat`` with exactly ``n_items`` rows (``why`` explains the count)."""
    if feat.ndim != 2:
        raise DataError(source, f"features must be a 2-D array [items, dim], got shape {feat.shape}")
    if not (np.issubdtype(feat.dtype, np.floating) or np.issubdtype(feat.dtype, np.integer)):
        raise DataError(source, f"features must be numeric, got dtype {feat.dtype}")
    if feat.shape[0] != n_items:
        raise DataError(source, f"{feat.shape[0]} feature rows for {n_items} items ({why})")
    with np.errstate(over="ignore", invalid="ignore"):
        feat = np.ascontiguousarray(feat, dtype=np.float32)
    finite = np.isfinite(feat).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise DataError(source, f"NaN or inf in {len(rows)} row(s), first at item {int(rows[0])}")
    return feat


def int_lines(path: Path) -> Iterator[tuple[int, list[int]]]:
    """Yield ``(line number, integers)`` for every non-blank line of a whitespace-separated text file."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                values = [int(t) for t in tokens]
            except ValueError:
                bad = next(t for t in tokens if not _is_int(t))
                raise DataError(path, f"line {number}: {bad!r} is not an integer") from None
            if min(values) < 0:
                raise DataError(path, f"line {number}: negative id {min(values)}")
            yield number, values


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True
