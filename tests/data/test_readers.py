"""Readers of every layout on tiny files, round trips through the files, and format detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.dataset import SPLITS, Dataset
from dglmm.data.errors import DataError
from dglmm.data.readers import (
    detect_format,
    load_dataset,
    read_kgat,
    read_lattice_json,
    read_mmrec,
    read_recbole,
)
from dglmm.data.synthetic import make_synthetic


def pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in pairs}


def write_mmrec(dataset: Dataset, directory: Path) -> Path:
    directory.mkdir()
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for label, split in enumerate(SPLITS):
        lines += [f"{u}\t{i}\t1\t0\t{label}" for u, i in dataset.split(split)]
    (directory / f"{directory.name}.inter").write_text("\n".join(lines) + "\n")
    for name, feat in dataset.modalities.items():
        np.save(directory / f"{name}_feat.npy", feat)
    return directory


def write_lattice(dataset: Dataset, directory: Path) -> Path:
    directory.mkdir()
    for split, name in zip(SPLITS, ("train.json", "val.json", "test.json"), strict=True):
        lists: dict[str, list[int]] = {}
        for u, i in dataset.split(split):
            lists.setdefault(str(u), []).append(int(i))
        (directory / name).write_text(json.dumps(lists))
    (directory / "item2id.json").write_text(json.dumps({f"i{i}": i for i in range(dataset.n_items)}))
    (directory / "user2id.json").write_text(json.dumps({f"u{u}": u for u in range(dataset.n_users)}))
    return directory


def test_mmrec_reads_splits_and_features(mmrec_dir: Path) -> None:
    ds = read_mmrec(mmrec_dir)
    assert (ds.name, ds.n_users, ds.n_items) == ("toy", 3, 6)
    assert pair_set(ds.valid) == {(0, 2), (2, 4)} and pair_set(ds.test) == {(0, 3), (1, 3)}
    assert len(ds.train) == 5 and ds.train.dtype == np.int64
    assert set(ds.modalities) == {"image", "text"}
    assert ds.modalities["image"].dtype == np.float32 and ds.modalities["image"].shape == (6, 4)
    assert list(ds.cold_items()) == [3, 4, 5]


def test_mmrec_accepts_inter_file_and_modality_subset(mmrec_dir: Path) -> None:
    ds = read_mmrec(mmrec_dir / "toy.inter", modalities=["text"])
    assert list(ds.modalities) == ["text"] and ds.n_items == 6


def test_mmrec_without_features_counts_items_from_ids(mmrec_dir: Path) -> None:
    for f in mmrec_dir.glob("*.npy"):
        f.unlink()
    assert read_mmrec(mmrec_dir).n_items == 5


def test_mmrec_round_trip(tmp_path: Path) -> None:
    ds = make_synthetic(n_users=60, n_items=40, seed=1)
    back = read_mmrec(write_mmrec(ds, tmp_path / "syn"))
    assert (back.n_users, back.n_items) == (ds.n_users, ds.n_items)
    for s in SPLITS:
        np.testing.assert_array_equal(back.split(s), ds.split(s))
    for m, feat in ds.modalities.items():
        np.testing.assert_array_equal(back.modalities[m], feat)


def test_lattice_reads_json(lattice_dir: Path) -> None:
    ds = read_lattice_json(lattice_dir)
    assert (ds.n_users, ds.n_items, len(ds.train), len(ds.valid), len(ds.test)) == (3, 5, 5, 2, 2)
    assert pair_set(ds.train) == {(0, 0), (0, 1), (1, 1), (1, 2), (2, 0)}


def test_lattice_id_maps_fix_counts(lattice_dir: Path) -> None:
    (lattice_dir / "item2id.json").write_text(json.dumps({str(i): i for i in range(8)}))
    (lattice_dir / "user2id.json").write_text(json.dumps({str(i): i for i in range(4)}))
    ds = read_lattice_json(lattice_dir)
    assert (ds.n_users, ds.n_items) == (4, 8)
    assert list(ds.users_without_train()) == [3]


def test_lattice_round_trip(tmp_path: Path) -> None:
    ds = make_synthetic(n_users=60, n_items=40, seed=2, modality_dims={})
    back = read_lattice_json(write_lattice(ds, tmp_path / "syn"))
    assert (back.n_users, back.n_items) == (ds.n_users, ds.n_items)
    for s in SPLITS:
        assert pair_set(back.split(s)) == pair_set(ds.split(s))


def test_kgat_reads_kg_and_carves_validation(kgat_dir: Path) -> None:
    ds = read_kgat(kgat_dir)
    assert (ds.n_users, ds.n_items, ds.n_entities) == (4, 6, 2)
    assert ds.relation_names == ["r0", "r1", "r2"]
    assert len(ds.kg) == 4 and list(ds.entity_items()) == [0, 1, 2]
    # user 0 has 4 training items -> 1 in valid; users 1 (2 items) -> 1 valid; user 2 (1 item) keeps it
    assert np.bincount(ds.valid[:, 0], minlength=4).tolist() == [1, 1, 0, 0]
    assert (2, 4) in pair_set(ds.train)
    assert pair_set(ds.train) | pair_set(ds.valid) == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 4)}
    assert pair_set(ds.test) == {(0, 5), (1, 3), (2, 0)}


def test_kgat_valid_carve_is_seeded(kgat_dir: Path) -> None:
    runs = [read_kgat(kgat_dir, seed=s).valid for s in (7, 7)]
    np.testing.assert_array_equal(*runs)


def test_kgat_relation_list_names(kgat_dir: Path) -> None:
    (kgat_dir / "relation_list.txt").write_text("org_id remap_id\nhas.genre 0\nhas.actor 1\nin.studio 2\n")
    assert read_kgat(kgat_dir).relation_names == ["has.genre", "has.actor", "in.studio"]


def test_recbole_reindexes_and_maps_kg(recbole_dir: Path) -> None:
    ds = read_recbole(recbole_dir)
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("tiny", 3, 6, 12)
    assert [len(ds.split(s)) for s in SPLITS] == [6, 3, 3]
    # items 10, 20, ..., 60 -> 0..5; entities m.a, m.b are items 0, 1; m.c, m.x are entities 6, 7
    assert ds.relation_names == ["film.actor", "film.genre"]
    assert sorted(map(tuple, ds.kg.tolist())) == [(0, 1, 7), (1, 1, 7), (6, 0, 0)]
    assert ds.n_entities == 2 and list(ds.entity_items()) == [0, 1]
    assert ds.item_text == ["Alpha. 1990", "Beta. 1991", "Gamma. 1992", "Delta", "", ""]


def test_recbole_user_tokens_sort_numerically(recbole_dir: Path) -> None:
    ds = read_recbole(recbole_dir)
    user_items = {int(u): int(n) for u, n in enumerate(np.bincount(
        np.concatenate([ds.split(s)[:, 0] for s in SPLITS])))}
    assert user_items == {0: 5, 1: 3, 2: 4}  # tokens "1", "2", "10"


def test_recbole_time_split_tests_latest(recbole_dir: Path) -> None:
    ds = read_recbole(recbole_dir, split_order="time")
    # user "1" (id 0) has timestamps 1..5 on items 10..50: latest (50 -> id 4) is tested, 40 validated
    assert (0, 4) in pair_set(ds.test) and (0, 3) in pair_set(ds.valid)
    assert (2, 5) in pair_set(ds.train)  # user "10" interacted with item 60 first


def test_recbole_min_rating_keeps_ids(recbole_dir: Path) -> None:
    ds = read_recbole(recbole_dir, min_rating=4)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 6, 7)


def test_recbole_split_column(recbole_dir: Path) -> None:
    rows = ["user_id:token\titem_id:token\tx_label:token", "a\tx\t0", "a\ty\t1", "b\tx\t0", "b\tz\t2"]
    (recbole_dir / "tiny.inter").write_text("\n".join(rows) + "\n")
    (recbole_dir / "tiny.link").write_text("item_id:token\tentity_id:token\nx\tm.a\n")
    ds = read_recbole(recbole_dir)
    assert pair_set(ds.valid) == {(0, 1)} and pair_set(ds.test) == {(1, 2)}


def test_recbole_split_is_seeded(recbole_dir: Path) -> None:
    a, b = read_recbole(recbole_dir, seed=3), read_recbole(recbole_dir / "tiny.inter", seed=3)
    for s in SPLITS:
        np.testing.assert_array_equal(a.split(s), b.split(s))


@pytest.mark.parametrize(("fixture", "kind"), [("mmrec_dir", "mmrec"), ("lattice_dir", "lattice"),
                                               ("kgat_dir", "kgat"), ("recbole_dir", "recbole")])
def test_detect_and_load(fixture: str, kind: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    assert detect_format(path) == kind
    assert load_dataset(path).n_interactions > 0


def test_load_inter_file_detects_format(mmrec_dir: Path, recbole_dir: Path) -> None:
    assert detect_format(mmrec_dir / "toy.inter") == "mmrec"
    assert detect_format(recbole_dir / "tiny.inter") == "recbole"


def test_load_passes_options_and_format(kgat_dir: Path) -> None:
    ds = load_dataset(kgat_dir, format="kgat", valid_ratio=0.5, seed=1)
    assert len(ds.valid) == 3  # user 0: 2 of 4, user 1: 1 of 2


def test_load_synthetic_by_name() -> None:
    ds = load_dataset("synthetic", n_users=50, n_items=30, seed=3)
    assert (ds.n_users, ds.n_items) == (50, 30)


def test_load_by_name_from_env(mmrec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGLMM_DATA", str(mmrec_dir.parent))
    assert load_dataset("toy").name == "toy"


def test_unknown_layout_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match=r"train\.json.*train\.txt.*\.inter"):
        load_dataset(tmp_path)


def test_unknown_name_lists_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DGLMM_DATA", str(tmp_path))
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="known names: synthetic, .*mine") as err:
        load_dataset("no-such-dataset")
    message = str(err.value)
    assert str(tmp_path.resolve()) in message
    folders = message.split("(folders in ")[1].rstrip(")").split(", ")
    assert len(folders) == len(set(folders))  # each searched folder named once
