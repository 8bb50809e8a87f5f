"""Do the films that RecBole's MovieLens-100k KG puts in a Freebase genre have that genre in MovieLens?

    python benchmarks/ml100k_kg_genres.py DIR      # DIR: the output of ../shared/data/get-ml100k.sh

Reads the raw atomic files only (``.item``, ``.link``, ``.kg``; no dglmm code), so it checks the data, not the
reader.  For the most common ``film.film.genre`` tails it prints the share of the linked films that carry each
MovieLens genre, beside that genre's share over all films.  With right item -> entity links, a Freebase genre's
films would be concentrated in the matching MovieLens genre; shares at the base rate mean the links do not
point at the films they are attached to.  ``dglmm data kg-check DIR`` is the general, name-free test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Horror", "Sci-Fi", "Children's", "Documentary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--top", type=int, default=8, help="how many of the most common KG genres to show")
    args = parser.parse_args()
    read = lambda suffix: pd.read_csv(args.dir / f"ml-100k{suffix}", sep="\t", dtype=str)  # noqa: E731
    item, link, kg = read(".item"), read(".link"), read(".kg")
    item.columns, link.columns, kg.columns = ["item", "title", "year", "genres"], ["item", "entity"], ["h", "r", "t"]
    genre_of = item.set_index("item")["genres"].fillna("")
    films = kg[kg.r == "film.film.genre"].merge(link, left_on="h", right_on="entity")
    share = lambda items: {g: genre_of[items].str.contains(g, regex=False).mean() for g in GENRES}  # noqa: E731
    rows = [{"KG genre entity": "(all films)", "films": len(genre_of), **share(genre_of.index)}]
    for tail, count in films.t.value_counts().head(args.top).items():
        rows.append({"KG genre entity": tail, "films": count, **share(films.item[films.t == tail].unique())})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
