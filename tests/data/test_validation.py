"""Every malformed input gives a one-line DataError ``<file>: <problem>`` (or a warning when repaired)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.errors import DataError, DataWarning
from dglmm.data.readers import load_dataset, read_kgat, read_lattice_json, read_mmrec, read_recbole


def raises_data_error(call: Callable[[], object], file: str, problem: str) -> DataError:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert Path(info.value.source or "").name == file, message
    assert problem in message, message
    return info.value


def edit_inter(directory: Path, old: str, new: str) -> None:
    inter = directory / "toy.inter"
    inter.write_text(inter.read_text().replace(old, new, 1))


def test_missing_directory(tmp_path: Path) -> None:
    raises_data_error(lambda: read_lattice_json(tmp_path / "nope"), "nope", "no such directory")
    raises_data_error(lambda: load_dataset(tmp_path / "nope"), "nope", "no such file or directory")


@pytest.mark.parametrize(("reader", "fixture", "file"), [
    (read_lattice_json, "lattice_dir", "val.json"), (read_kgat, "kgat_dir", "test.txt"),
    (read_kgat, "kgat_dir", "train.txt"), (read_lattice_json, "lattice_dir", "train.json")])
def test_missing_file(reader: Callable, fixture: str, file: str, request: pytest.FixtureRequest) -> None:
    directory = request.getfixturevalue(fixture)
    (directory / file).unlink()
    if file == "train.json":  # without train.json the folder is no longer recognisable as LATTICE
        raises_data_error(lambda: load_dataset(directory), directory.name, "no known dataset layout")
    raises_data_error(lambda: reader(directory), file, "missing file")


def test_mmrec_missing_column(mmrec_dir: Path) -> None:
    edit_inter(mmrec_dir, "\tx_label", "\tsplit")
    raises_data_error(lambda: read_mmrec(mmrec_dir), "toy.inter", "missing column(s) x_label")


def test_recbole_missing_column_and_untyped_header(recbole_dir: Path) -> None:
    inter = recbole_dir / "tiny.inter"
    text = inter.read_text()
    inter.write_text(text.replace("item_id:token", "movie:token", 1))
    raises_data_error(lambda: read_recbole(recbole_dir), "tiny.inter", "missing column(s) item_id")
    inter.write_text(text.replace("rating:float", "rating", 1))
    raises_data_error(lambda: read_recbole(recbole_dir), "tiny.inter", "'rating' is not name:type")


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("2\t4\t1", "2\tfour\t1", "line 10: itemID 'four' is not an integer"),
    ("1\t3\t5", "1.5\t3\t5", "userID '1.5' is not an integer"),
    ("2\t4\t1", "2\t-4\t1", "line 10: negative itemID -4"),
    ("2\t4\t1\t1\t1", "2\t4\t1\t1\t3", "line 10: x_label 3 is not 0, 1 or 2"),
    ("2\t4\t1\t1\t1", "2\t4\t1\t1\t1\t9", "Expected 5 fields in line 10, saw 6"),
    ("2\t4\t1\t1\t1", "2\t\t1\t1\t1", "line 10: itemID '' is not an integer"),
])
def test_mmrec_bad_values(mmrec_dir: Path, old: str, new: str, problem: str) -> None:
    edit_inter(mmrec_dir, old, new)
    raises_data_error(lambda: read_mmrec(mmrec_dir), "toy.inter", problem)


@pytest.mark.parametrize(("file", "content", "problem"), [
    ("train.json", {"0": [0, "1"]}, "item id '1' is not an integer"),
    ("train.json", {"0": [0, 1.5]}, "item id 1.5 is not an integer"),
    ("train.json", {"u0": [0]}, "user id 'u0' is not an integer"),
    ("val.json", {"0": [-2]}, "negative item id -2"),
    ("test.json", {"0": 3}, "user 0: expected a list of item ids"),
    ("test.json", [[0, 3]], "expected an object"),
])
def test_lattice_bad_values(lattice_dir: Path, file: str, content: object, problem: str) -> None:
    (lattice_dir / file).write_text(json.dumps(content))
    raises_data_error(lambda: read_lattice_json(lattice_dir), file, problem)


def test_lattice_invalid_json(lattice_dir: Path) -> None:
    (lattice_dir / "val.json").write_text('{"0": [1,')
    raises_data_error(lambda: read_lattice_json(lattice_dir), "val.json", "invalid JSON")


def test_lattice_ids_beyond_id_map(lattice_dir: Path) -> None:
    (lattice_dir / "item2id.json").write_text(json.dumps({str(i): i for i in range(4)}))
    raises_data_error(lambda: read_lattice_json(lattice_dir), "val.json",
                      "item id 4 out of range: item2id.json has 4 items")


@pytest.mark.parametrize(("file", "content", "problem"), [
    ("train.txt", "0 0 1\n1 x 2\n", "line 2: 'x' is not an integer"),
    ("test.txt", "0 5\n-1 3\n", "line 2: negative id -1"),
    ("kg_final.txt", "0 0 6\n1 0\n", "line 2: expected 3 integers (head relation tail), got 2"),
    ("kg_final.txt", "0 0 6\n1 0 6 7\n", "line 2: expected 3 integers (head relation tail), got 4"),
    ("kg_final.txt", "0 0 6\n1 0 -6\n", "line 2: negative id -6"),
    ("kg_final.txt", "0 0 6\n1 r 7\n", "line 2: 'r' is not an integer"),
])
def test_kgat_malformed_lines(kgat_dir: Path, file: str, content: str, problem: str) -> None:
    (kgat_dir / file).write_text(content)
    raises_data_error(lambda: read_kgat(kgat_dir), file, problem)


def test_kgat_entity_beyond_entity_list(kgat_dir: Path) -> None:
    (kgat_dir / "entity_list.txt").write_text("org_id remap_id\n" + "".join(f"e{i} {i}\n" for i in range(7)))
    raises_data_error(lambda: read_kgat(kgat_dir), "kg_final.txt", "entity id 7 out of range")


def test_kgat_relation_list_missing_name(kgat_dir: Path) -> None:
    (kgat_dir / "relation_list.txt").write_text("org_id remap_id\na 0\nb 1\n")
    raises_data_error(lambda: read_kgat(kgat_dir), "relation_list.txt", "no name for relation id 2")


def test_recbole_link_to_unknown_item(recbole_dir: Path) -> None:
    (recbole_dir / "tiny.link").write_text("item_id:token\tentity_id:token\n10\tm.a\n999\tm.b\n")
    raises_data_error(lambda: read_recbole(recbole_dir), "tiny.link",
                      "line 3: item_id '999' is not an item of tiny.inter")


def test_recbole_link_not_one_to_one(recbole_dir: Path) -> None:
    (recbole_dir / "tiny.link").write_text("item_id:token\tentity_id:token\n10\tm.a\n20\tm.a\n")
    raises_data_error(lambda: read_recbole(recbole_dir), "tiny.link", "line 3: entity linked to more than one item")


def test_recbole_bad_rating(recbole_dir: Path) -> None:
    inter = recbole_dir / "tiny.inter"
    inter.write_text(inter.read_text().replace("20\t4\t1", "20\tgood\t1", 1))
    raises_data_error(lambda: read_recbole(recbole_dir, min_rating=3), "tiny.inter",
                      "line 3: rating 'good' is not a finite number")


@pytest.mark.parametrize(("rows", "problem"), [(4, "4 feature rows for 5 items (interactions use item ids up to 4)"),
                                               (7, "6 feature rows for 7 items (image_feat.npy has 7 rows)")])
def test_feature_rows_must_match_items(mmrec_dir: Path, rows: int, problem: str) -> None:
    np.save(mmrec_dir / "image_feat.npy", np.ones((rows, 4), dtype=np.float32))
    if rows == 4:
        (mmrec_dir / "text_feat.npy").unlink()
    file = "image_feat.npy" if rows == 4 else "text_feat.npy"
    raises_data_error(lambda: read_mmrec(mmrec_dir), file, problem)


def test_feature_rows_must_match_id_map(lattice_dir: Path) -> None:
    (lattice_dir / "item2id.json").write_text(json.dumps({str(i): i for i in range(5)}))
    np.save(lattice_dir / "image_feat.npy", np.ones((6, 2), dtype=np.float32))
    raises_data_error(lambda: read_lattice_json(lattice_dir), "image_feat.npy", "6 feature rows for 5 items")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(mmrec_dir: Path, bad: float) -> None:
    feat = np.ones((6, 3), dtype=np.float32)
    feat[2, 1] = bad
    np.save(mmrec_dir / "text_feat.npy", feat)
    raises_data_error(lambda: read_mmrec(mmrec_dir), "text_feat.npy", "NaN or inf in 1 row(s), first at item 2")


def test_features_overflowing_float32(mmrec_dir: Path) -> None:
    np.save(mmrec_dir / "text_feat.npy", np.full((6, 3), 1e300))
    raises_data_error(lambda: read_mmrec(mmrec_dir), "text_feat.npy", "NaN or inf")


@pytest.mark.parametrize(("array", "problem"), [(np.ones(6), "must be a 2-D array"),
                                                (np.array([["a"]] * 6), "must be numeric")])
def test_malformed_features(mmrec_dir: Path, array: np.ndarray, problem: str) -> None:
    np.save(mmrec_dir / "text_feat.npy", array)
    raises_data_error(lambda: read_mmrec(mmrec_dir), "text_feat.npy", problem)


def test_unreadable_feature_file(mmrec_dir: Path) -> None:
    (mmrec_dir / "text_feat.npy").write_text("not numpy")
    raises_data_error(lambda: read_mmrec(mmrec_dir), "text_feat.npy", "cannot read .npy file")


def test_duplicates_dropped_with_warning(mmrec_dir: Path) -> None:
    inter = mmrec_dir / "toy.inter"
    inter.write_text(inter.read_text() + "0\t0\t5\t1\t0\n1\t3\t5\t3\t0\n")
    with pytest.warns(DataWarning, match=r"toy\.inter: dropped 2 duplicate"):
        ds = read_mmrec(mmrec_dir)
    assert len(ds.train) == 6 and len(ds.test) == 1  # (1, 3) kept in train, the earliest split


def test_duplicates_across_lattice_files(lattice_dir: Path) -> None:
    (lattice_dir / "test.json").write_text(json.dumps({"0": [3, 0], "1": [3]}))
    with pytest.warns(DataWarning, match=r"lat: dropped 1 duplicate"):
        assert len(read_lattice_json(lattice_dir).test) == 2


def test_duplicate_kg_triples_dropped_with_warning(kgat_dir: Path) -> None:
    (kgat_dir / "kg_final.txt").write_text(KG := "0 0 6\n1 0 6\n0 0 6\n")
    with pytest.warns(DataWarning, match=r"kg_final\.txt: dropped 1 duplicate KG triple"):
        assert len(read_kgat(kgat_dir).kg) == len(KG.splitlines()) - 1


@pytest.mark.parametrize(("label", "split"), [("0", "train"), ("1", "valid"), ("2", "test")])
def test_empty_split_mmrec(mmrec_dir: Path, label: str, split: str) -> None:
    lines = (mmrec_dir / "toy.inter").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if not line.endswith("\t" + label)]
    (mmrec_dir / "toy.inter").write_text("\n".join(kept) + "\n")
    raises_data_error(lambda: read_mmrec(mmrec_dir), "toy.inter", f"the {split} split is empty")


def test_empty_split_lattice_and_kgat(lattice_dir: Path, kgat_dir: Path) -> None:
    (lattice_dir / "test.json").write_text("{}")
    raises_data_error(lambda: read_lattice_json(lattice_dir), "lat", "the test split is empty")
    (kgat_dir / "train.txt").write_text("0\n1\n")
    raises_data_error(lambda: read_kgat(kgat_dir), "train.txt", "the train split is empty")
    (kgat_dir / "train.txt").write_text("0 1\n1 2\n")  # single items stay in train: nothing to validate on
    raises_data_error(lambda: read_kgat(kgat_dir), "kg", "the valid split is empty")


def test_empty_and_headerless_files(mmrec_dir: Path) -> None:
    (mmrec_dir / "toy.inter").write_text("")
    raises_data_error(lambda: read_mmrec(mmrec_dir), "toy.inter", "empty file")
    with pytest.raises(DataError, match="neither MMRec"):
        load_dataset(mmrec_dir)


def test_recbole_features_follow_item_tokens(recbole_dir: Path) -> None:
    np.save(recbole_dir / "image_feat.npy", np.ones((6, 2), dtype=np.float16))
    assert read_recbole(recbole_dir).modalities["image"].dtype == np.float32
    np.save(recbole_dir / "image_feat.npy", np.ones((5, 2), dtype=np.float32))
    raises_data_error(lambda: read_recbole(recbole_dir), "image_feat.npy",
                      "5 feature rows for 6 items (tiny.inter has 6 distinct items)")


def test_inter_file_choice(tmp_path: Path) -> None:
    raises_data_error(lambda: read_mmrec(tmp_path), tmp_path.name, "no .inter file in directory")
    for name in ("a.inter", "b.inter"):
        (tmp_path / name).write_text("userID\titemID\tx_label\n0\t0\t0\n")
    raises_data_error(lambda: read_mmrec(tmp_path), tmp_path.name, "several .inter files (a.inter, b.inter)")


def test_huge_json_id(lattice_dir: Path) -> None:
    (lattice_dir / "test.json").write_text('{"0": [123456789012345678901234567890]}')
    raises_data_error(lambda: read_lattice_json(lattice_dir), "test.json", "does not fit in 64 bits")


def test_unknown_modality_requested(mmrec_dir: Path) -> None:
    raises_data_error(lambda: read_mmrec(mmrec_dir, modalities=["audio"]), "toy",
                      "no feature file for modality audio (looked for audio_feat.npy)")
