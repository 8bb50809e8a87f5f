"""Re-link a MovieLens KG whose ``.link`` file is keyed by MovieLens-wide movie ids instead of the dataset's own.

RecBole's ``ml-100k`` example (and so ``get-ml100k.sh``) ships a ``.link`` file whose item ids are
MovieLens-wide ``movieId``s (the ids of ML-1M, ML-20M and ml-latest), cut at 1,682, while ML-100k numbers its
films 1..1,682 in its own order: its ``item 260`` is *Event Horizon* (1997) but the link gives it the Freebase
entity of *Star Wars* (``m.0dtfn``, MovieLens ``movieId`` 260).  ``dglmm data kg-check`` measures the effect: on
the shipped links the items that share a KG entity share no more users than random pairs (ratio 1.00).

:func:`relink_movielens` repairs it.  Each item's title and year in ``<name>.item`` are matched to a MovieLens
``movies.dat`` (``id::Title (Year)::genres``, e.g. ML-1M's) or ``movies.csv`` (``movieId,title,genres``, e.g.
ml-latest's), and the item takes the entity the old link gave that ``movieId``.  Matching, in order:

1. **exact**: the normalised title (:func:`normalise_title`: accents folded, case and punctuation dropped,
   alternate titles in parentheses dropped, trailing articles ``", The"`` moved to the front) and the year;
2. **fuzzy**, for the rest, among the films of the same year: the item's normalised title is a word-prefix or
   word-subsequence of the film's (ML-100k's "Star Wars" is ML-1M's "Star Wars: Episode IV - A New Hope"), or
   their :class:`difflib.SequenceMatcher` ratio is at least ``min_similarity`` (a tie between two films: no
   match).

Items without a match, or whose film the old link does not cover, get no link.  When two items match one film
(ML-100k lists a few films twice) the first item keeps it, as a link must be one-to-one.  The other files are
copied unchanged, so the interactions, the split and the features are the same as the source's.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shutil
import unicodedata
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from dglmm.data.errors import DataError
from dglmm.data.formats.common import find_inter_file
from dglmm.data.formats.recbole import read_atomic
from dglmm.data.validate import require_columns, require_file
from dglmm.errors import InputError
from dglmm.io import write_text

ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "das", "der", "die", "el", "los", "las")
_TRAILING_ARTICLE = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in ARTICLES) + r")$")
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def normalise_title(title: str) -> str:
    """``"Misérables, Les (Les Miserables)"`` -> ``"les miserables"``: a key that survives MovieLens' edits."""
    text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode().lower().strip()
    text = re.sub(r"\s*\([^)]*\)", "", text).strip()          # alternate titles "(a.k.a. ...)", "(La Promesse)"
    match = _TRAILING_ARTICLE.match(text)
    if match:
        text = f"{match.group(2)} {match.group(1)}"
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def read_movielens_movies(path: str | Path) -> pd.DataFrame:
    """``movieId``, ``title`` (year removed) and ``year`` (NaN if absent) of a ``movies.dat`` or ``movies.csv``."""
    path = require_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")          # GroupLens ships ML-1M's movies.dat in Latin-1
    lines = [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".csv":
        table = pd.read_csv(StringIO("\n".join(lines)), dtype=str)
        require_columns(table.columns, ("movieId", "title"), path)
        ids, titles = table["movieId"], table["title"]
    else:
        parts = [line.split("::") for line in lines]
        bad = next((n for n, p in enumerate(parts, 1) if len(p) != 3), None)
        if bad is not None:
            raise DataError(path, f"line {bad}: expected 'id::Title (Year)::genres'")
        ids, titles = pd.Series([p[0] for p in parts]), pd.Series([p[1] for p in parts])
    numeric = pd.to_numeric(ids, errors="coerce")
    if numeric.isna().any():
        raise DataError(path, f"line {int(np.argmax(numeric.isna().to_numpy())) + 1}: movie id "
                              f"{ids[numeric.isna()].iloc[0]!r} is not an integer")
    years = titles.str.extract(_YEAR)[0].astype(float)
    return pd.DataFrame({"movieId": numeric.astype(np.int64).to_numpy(),
                         "title": titles.str.replace(_YEAR, "", regex=True).str.strip().to_numpy(),
                         "year": years.to_numpy()})


def _is_word_subsequence(short: str, long: str) -> bool:
    """Every word of ``short`` appears in ``long`` in order (``"star wars"`` in ``"star wars episode iv..."``)."""
    words = iter(long.split())
    return bool(short) and all(word in words for word in short.split())


def match_titles(items: pd.DataFrame, movies: pd.DataFrame, min_similarity: float = 0.8) -> pd.DataFrame:
    """For each row of ``items`` (``item_id``, ``title``, ``year``): its ``movieId`` (-1 if none) and ``method``."""
    movies = movies.assign(key=movies["title"].map(normalise_title))
    item_keys = items["title"].map(normalise_title)
    index = movies.drop_duplicates(["key", "year"], keep=False).set_index(["key", "year"])["movieId"]
    exact = pd.Series(list(zip(item_keys, items["year"], strict=True))).map(index.to_dict())
    out = pd.DataFrame({"item_id": items["item_id"].to_numpy(), "movieId": exact.fillna(-1).astype(np.int64),
                        "method": np.where(exact.notna(), "exact", "none")})
    by_year = {year: group for year, group in movies.groupby("year")}
    for row in np.flatnonzero(exact.isna().to_numpy()):   # a few dozen leftovers, one year's films each
        candidates = by_year.get(items["year"].iloc[row])
        if candidates is None or not item_keys.iloc[row]:
            continue
        key = item_keys.iloc[row]
        scores = [1.0 if _is_word_subsequence(key, other) else difflib.SequenceMatcher(None, key, other).ratio()
                  for other in candidates["key"]]
        best = int(np.argmax(scores))
        if scores[best] >= min_similarity and scores.count(scores[best]) == 1:   # ties: ambiguous, no link
            out.loc[row, ["movieId", "method"]] = [int(candidates["movieId"].iloc[best]), "fuzzy"]
    return out


@dataclasses.dataclass
class RelinkReport:
    items: int
    exact: int
    fuzzy: int
    unmatched: int
    shared_film: int      # items dropped because an earlier item matched the same film
    linked_before: int
    linked_after: int
    matches: pd.DataFrame

    def summary(self) -> str:
        return (f"{self.items} items: {self.exact} matched by title and year, {self.fuzzy} by a close title, "
                f"{self.unmatched} unmatched, {self.shared_film} sharing a film with an earlier item; "
                f"links {self.linked_before} -> {self.linked_after}")


def _item_titles(inter: Path) -> pd.DataFrame:
    path = inter.with_suffix(".item")
    if not path.exists():
        raise InputError(f"{path}: not found (re-linking matches the items' titles and years)")
    table, fields = read_atomic(path)
    title = next((f for f in fields if "title" in f), None)
    year = next((f for f in fields if "year" in f), None)
    if title is None or year is None:
        raise DataError(path, f"needs a title and a year field (has {', '.join(fields)})")
    require_columns(fields, ("item_id",), path)
    return pd.DataFrame({"item_id": table["item_id"].astype(str).str.strip(),
                         "title": table[title].astype(str), "year": pd.to_numeric(table[year], errors="coerce")})


def relink_movielens(source: str | Path, movies: str | Path, out_dir: str | Path,
                     min_similarity: float = 0.8) -> RelinkReport:
    """Write a copy of the RecBole dataset ``source`` to ``out_dir`` with its ``.link`` keyed by its own items."""
    if not 0.0 < min_similarity <= 1.0:
        raise InputError(f"--min-similarity must be in (0, 1], got {min_similarity}")
    inter = find_inter_file(source)
    out_dir = Path(out_dir)
    if out_dir.resolve() == inter.parent.resolve():
        raise InputError(f"{out_dir}: the output directory must differ from the source's")
    link_path = inter.with_suffix(".link")
    if not link_path.exists():
        raise InputError(f"{link_path}: not found (nothing to re-link)")
    link, fields = read_atomic(link_path)
    require_columns(fields, ("item_id", "entity_id"), link_path)
    old = pd.Series(link["entity_id"].astype(str).str.strip().to_numpy(),
                    index=pd.to_numeric(link["item_id"], errors="coerce"))
    if old.index.isna().any():
        raise DataError(link_path, "item_id must be MovieLens integer movie ids to be re-linked")
    old = old[~old.index.duplicated()]
    matches = match_titles(_item_titles(inter), read_movielens_movies(movies), min_similarity)
    matched = matches["movieId"] >= 0
    first = matched & ~matches["movieId"].duplicated()        # a film's first item keeps it
    matches["entity_id"] = matches["movieId"].map(old.to_dict()).where(first)
    new = matches.dropna(subset=["entity_id"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(inter.parent.iterdir()):
        same_dataset = path.name.startswith(inter.stem + ".") or path.name.endswith("_feat.npy")
        if path.is_file() and same_dataset and path != link_path:
            shutil.copy2(path, out_dir / path.name)
    lines = ["item_id:token\tentity_id:token", *(f"{i}\t{e}" for i, e in zip(new["item_id"], new["entity_id"],
                                                                          strict=True))]
    write_text(out_dir / link_path.name, "\n".join(lines) + "\n")
    return RelinkReport(items=len(matches), exact=int((matches["method"] == "exact").sum()),
                        fuzzy=int((matches["method"] == "fuzzy").sum()), unmatched=int((~matched).sum()),
                        shared_film=int((matched & ~first).sum()), linked_before=len(old),
                        linked_after=len(new), matches=matches)
