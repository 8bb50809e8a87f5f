"""Re-linking a MovieLens KG keyed by MovieLens-wide movie ids (``dglmm data relink-movielens``)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dglmm.cli import main
from dglmm.data.errors import DataError
from dglmm.data.formats.recbole import read_recbole
from dglmm.data.relink import match_titles, normalise_title, read_movielens_movies, relink_movielens
from dglmm.errors import InputError

MOVIES_DAT = """1::Toy Story (1995)::Animation|Children's|Comedy
2::Jumanji (1995)::Adventure|Children's|Fantasy
3::GoldenEye (1995)::Action|Adventure|Thriller
4::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi
5::Misérables, Les (1995)::Drama|Musical
"""
# the dataset's own numbering differs from MovieLens': its item 2 is GoldenEye, MovieLens' 2 is Jumanji
ITEMS = [("1", "Toy Story", "1995"), ("2", "GoldenEye", "1995"), ("3", "Star Wars", "1977"),
         ("4", "Jumanji", "1995"), ("5", "Miserables, Les", "1995"), ("6", "Toy Story", "1995"),
         ("7", "A Film Nobody Made", "1990")]
OLD_LINK = {"1": "e.toy", "2": "e.jumanji", "3": "e.goldeneye", "4": "e.starwars", "5": "e.miserables"}


def write_movielens_like(directory: Path) -> Path:
    """A RecBole dataset whose ``.link`` uses MovieLens ids; each entity's film has a director entity."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    rows = [(u, i) for u in range(1, 31) for i in rng.choice(np.arange(1, 8), size=4, replace=False)]
    (directory / "ml.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
    (directory / "ml.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\n"
                                       + "".join(f"{i}\t{t}\t{y}\n" for i, t, y in ITEMS))
    (directory / "ml.link").write_text("item_id:token\tentity_id:token\n"
                                       + "".join(f"{i}\t{e}\n" for i, e in OLD_LINK.items()))
    (directory / "ml.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                     + "".join(f"{e}\tdirected_by\t{e}.director\n" for e in OLD_LINK.values()))
    np.save(directory / "text_feat.npy", rng.normal(size=(7, 4)).astype(np.float32))
    movies = directory.parent / "movies.dat"
    movies.write_bytes(MOVIES_DAT.encode("latin-1"))   # GroupLens' encoding
    return movies


@pytest.mark.parametrize("title, key", [
    ("Empire Strikes Back, The", "the empire strikes back"),
    ("Misérables, Les", "les miserables"),
    ("Shanghai Triad (Yao a yao yao dao waipo qiao)", "shanghai triad"),
    ("Boy's Life 2", "boy s life 2"),
    ("L.A. Confidential", "l a confidential"),
])
def test_normalise_title(title, key):
    assert normalise_title(title) == key


def test_movies_dat_and_csv_give_the_same_table(tmp_path):
    dat = tmp_path / "movies.dat"
    dat.write_bytes(MOVIES_DAT.encode("latin-1"))
    csv = tmp_path / "movies.csv"
    csv.write_text("movieId,title,genres\n" + "".join(
        f'{line.split("::")[0]},"{line.split("::")[1]}",x\n' for line in MOVIES_DAT.splitlines()))
    a, b = read_movielens_movies(dat), read_movielens_movies(csv)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[3].tolist() == [4, "Star Wars: Episode IV - A New Hope", 1977.0]
    assert a.loc[4, "title"] == "Misérables, Les"


def test_malformed_movies_file_names_the_file_and_line(tmp_path):
    bad = tmp_path / "movies.dat"
    bad.write_text("1::Toy Story (1995)::Animation\n2::Jumanji (1995)\n")
    with pytest.raises(DataError, match=r"movies\.dat.*line 2"):
        read_movielens_movies(bad)
    with pytest.raises(DataError, match=r"absent\.dat: missing file"):
        read_movielens_movies(tmp_path / "absent.dat")


def test_match_titles_exact_then_close_titles_of_the_same_year(tmp_path):
    movies = tmp_path / "movies.dat"
    movies.write_bytes(MOVIES_DAT.encode("latin-1"))
    items = pd.DataFrame(ITEMS, columns=["item_id", "title", "year"]).astype({"year": float})
    items.loc[len(items)] = ["8", "Star Wars", 1980.0]          # the right title, the wrong year: no match
    items.loc[len(items)] = ["9", "GoldenEyes", 1995.0]         # ratio 0.95: a close title
    got = match_titles(items, read_movielens_movies(movies))
    assert got["movieId"].tolist() == [1, 3, 4, 2, 5, 1, -1, -1, 3]
    assert got["method"].tolist() == ["exact", "exact", "fuzzy", "exact", "exact", "exact", "none", "none", "fuzzy"]
    strict = match_titles(items, read_movielens_movies(movies), min_similarity=0.99)
    assert strict["movieId"].tolist()[-1] == -1                  # below the threshold
    assert strict["movieId"].tolist()[2] == 4                    # a word subsequence still matches


def test_a_title_two_films_share_is_ambiguous_and_gets_no_link():
    movies = pd.DataFrame({"movieId": [1, 2, 3], "title": ["Hamlet", "Hamlet", "Hamlet 2"],
                           "year": [1996.0, 1996.0, 1996.0]})
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Hamlet", "Hamlet 2"], "year": [1996.0, 1996.0]})
    got = match_titles(items, movies)
    assert got["movieId"].tolist() == [-1, 3] and got["method"].tolist() == ["none", "exact"]


def test_relinked_dataset_gives_each_item_its_own_film_and_keeps_everything_else(tmp_path):
    movies = write_movielens_like(tmp_path / "src")
    report = relink_movielens(tmp_path / "src", movies, tmp_path / "out")
    assert (report.exact, report.fuzzy, report.unmatched, report.shared_film) == (5, 1, 1, 1)
    assert (report.linked_before, report.linked_after) == (5, 5)
    link = pd.read_csv(tmp_path / "out" / "ml.link", sep="\t", dtype=str)
    assert dict(zip(link["item_id:token"], link["entity_id:token"], strict=True)) == {
        "1": "e.toy", "2": "e.goldeneye", "3": "e.starwars", "4": "e.jumanji", "5": "e.miserables"}
    source, relinked = read_recbole(tmp_path / "src"), read_recbole(tmp_path / "out")
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(source.split(split), relinked.split(split))
    np.testing.assert_array_equal(source.modalities["text"], relinked.modalities["text"])
    # item token "2" (dense id 1) now heads GoldenEye's triple; before it headed Jumanji's
    names = [relinked.relation_names[r] for r in relinked.kg[:, 1]]
    assert all(n == "directed_by" for n in names)
    assert sorted(relinked.kg[:, 0].tolist()) == [0, 1, 2, 3, 4]
    heads_before = {int(h): int(t) for h, _, t in source.kg}
    heads_after = {int(h): int(t) for h, _, t in relinked.kg}
    assert heads_before[1] != heads_after[1]                   # a different director entity for item "2"
    assert heads_after[1] == heads_before[2]                   # ... the one MovieLens id 3 (GoldenEye) had


def test_relink_refuses_to_overwrite_its_source_and_bad_options(tmp_path):
    movies = write_movielens_like(tmp_path / "src")
    with pytest.raises(InputError, match="must differ"):
        relink_movielens(tmp_path / "src", movies, tmp_path / "src")
    with pytest.raises(InputError, match="min-similarity"):
        relink_movielens(tmp_path / "src", movies, tmp_path / "out", min_similarity=0.0)
    (tmp_path / "src" / "ml.item").unlink()
    with pytest.raises(InputError, match=r"ml\.item: not found"):
        relink_movielens(tmp_path / "src", movies, tmp_path / "out")


def test_cli_relink(tmp_path, capsys):
    movies = write_movielens_like(tmp_path / "src")
    assert main(["data", "relink-movielens", str(tmp_path / "src"), "--movies", str(movies),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "7 items: 5 matched by title and year, 1 by a close title, 1 unmatched" in out
    assert "links 5 -> 5" in out
    assert main(["data", "relink-movielens", str(tmp_path / "src"), "--movies", str(tmp_path / "none.dat"),
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.dat: missing file" in err[0]
