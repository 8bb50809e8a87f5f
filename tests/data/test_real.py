"""Exact counts on the real datasets of ``../shared/data`` (skipped when absent) and on MovieLens-100k."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.readers import load_dataset, read_lattice_json, read_mmrec, read_recbole

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.realdata


def shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real data absent: {path} does not exist")
    return path


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = SHARED / "get-ml100k.sh"
    if not script.exists():
        pytest.skip(f"real data absent: {script} does not exist")
    target = tmp_path_factory.mktemp("ml100k")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        subprocess.run(["bash", str(script), str(target)], check=True, capture_output=True, env=env, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"could not fetch MovieLens-100k (no network?): {exc}")
    return target


def test_baby() -> None:
    ds = read_lattice_json(shared_dir("baby"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (19_445, 7_050, 160_792)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (119_674, 20_559, 20_559)
    assert len(ds.cold_items()) == 2 and len(ds.users_without_train()) == 0
    assert ds.modalities == {}


def test_tiktok() -> None:
    ds = read_mmrec(shared_dir("tiktok"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (9_308, 6_710, 68_722)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (59_541, 3_051, 6_130)
    assert {m: f.shape for m, f in ds.modalities.items()} == {"image": (6_710, 128), "audio": (6_710, 128)}
    assert all(f.dtype == np.float32 for f in ds.modalities.values())  # stored as float16
    assert len(ds.cold_items()) == 465 and len(ds.users_without_train()) == 10


def test_names_resolve_to_shared_data() -> None:
    shared_dir("tiktok")
    assert load_dataset("tiktok").n_users == 9_308


def test_ml100k(ml100k: Path) -> None:
    ds = read_recbole(ml100k)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1_682, 100_000)
    assert len(ds.kg) == 91_631 and ds.n_relations == 24
    assert ds.n_entities == 33_030 and len(ds.entity_items()) == 1_598
    assert ds.item_text is not None and ds.item_text[0].startswith("Toy Story")
    assert min(len(ds.split(s)) for s in ("train", "valid", "test")) > 9_000
    assert load_dataset(ml100k).summary() == ds.summary()


def _cli(capsys: pytest.CaptureFixture, *args: str) -> str:
    from dglmm.cli import main

    assert main(list(args)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name, expected", [
    ("baby", ["users          19,445", "items          7,050", "160,792  train 119,674 / valid 20,559 / test 20,559",
              "cold items     2"]),
    ("tiktok", ["users          9,308", "items          6,710", "68,722  train 59,541 / valid 3,051 / test 6,130",
                "(128-d)", "cold items     465", "users w/o train 10"]),
])
def test_cli_info_and_graph_on_shared_data(name: str, expected: list[str], capsys: pytest.CaptureFixture,
                                           tmp_path: Path) -> None:
    path = str(shared_dir(name))
    info = _cli(capsys, "data", "info", path)
    for line in expected:
        assert line in info
    graph = _cli(capsys, "data", "graph", path, "--no-cache")
    train = load_dataset(path).train
    assert f"{len(train):,}" in graph and "interacted_by" in graph
    if name == "tiktok":
        assert graph.count(f"{6_710 * 10:,}") >= 2  # similar_image and similar_audio, k = 10


def test_cli_info_and_graph_on_ml100k(ml100k: Path, capsys: pytest.CaptureFixture) -> None:
    info = _cli(capsys, "data", "info", str(ml100k))
    for line in ["users          943", "items          1,682", "interactions   100,000",
                 "entities       33,030", "91,631 triples, 24 relations, 1,598 items linked"]:
        assert line in info
    graph = _cli(capsys, "data", "graph", str(ml100k), "--no-cache")
    assert "entity" in graph and "rev_" in graph


def test_ml100k_link_is_keyed_by_movielens_wide_ids(ml100k: Path) -> None:
    """The shipped fault that ``dglmm data relink-movielens`` repairs: Star Wars' entity sits on item 260."""
    import pandas as pd

    link = pd.read_csv(ml100k / "ml-100k.link", sep="\t", dtype=str).set_index("item_id:token")["entity_id:token"]
    items = pd.read_csv(ml100k / "ml-100k.item", sep="\t", dtype=str).set_index("item_id:token")
    assert link["260"] == "m.0dtfn"                                   # Freebase: Star Wars (MovieLens movieId 260)
    assert items.loc["260", "movie_title:token_seq"] == "Event Horizon"   # ... but ML-100k's item 260
    assert items.loc["50", "movie_title:token_seq"] == "Star Wars" and link.get("50") != "m.0dtfn"


def test_relinked_ml100k_kg_carries_signal(ml100k: Path, tmp_path: Path) -> None:
    """With a MovieLens movies.dat (``DGLMM_MOVIELENS_MOVIES``, e.g. ML-1M's), the re-linked KG passes kg-check."""
    from dglmm.data.kg_check import kg_alignment
    from dglmm.data.relink import relink_movielens

    movies = os.environ.get("DGLMM_MOVIELENS_MOVIES")
    if not movies or not Path(movies).is_file():
        pytest.skip("DGLMM_MOVIELENS_MOVIES does not name a MovieLens movies.dat / movies.csv")
    report = relink_movielens(ml100k, movies, tmp_path / "relinked")
    assert report.linked_after > 1_400 and report.unmatched < 60
    pooled = kg_alignment(read_recbole(tmp_path / "relinked"), permutations=19, max_pairs=5_000).iloc[-1]
    shipped = kg_alignment(read_recbole(ml100k), permutations=19, max_pairs=5_000).iloc[-1]
    assert pooled["ratio"] > 1.5 and pooled["p"] <= 0.05
    assert shipped["ratio"] < 1.2
