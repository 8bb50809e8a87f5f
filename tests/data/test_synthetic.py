"""The synthetic generator: shapes, determinism, and that its planted signal is really there."""

from __future__ import annotations

import numpy as np
import pytest

from dglmm.data.dataset import SPLITS, Dataset
from dglmm.data.synthetic import RELATIONS, PlantedStructure, make_synthetic, make_synthetic_with_truth


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, PlantedStructure]:
    return make_synthetic_with_truth()


def recall_at(scores: np.ndarray, ds: Dataset, k: int = 20) -> float:
    scores = scores.astype(np.float64).copy()
    scores[ds.train[:, 0], ds.train[:, 1]] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    relevant = np.zeros(scores.shape, dtype=bool)
    relevant[ds.test[:, 0], ds.test[:, 1]] = True
    hits = np.take_along_axis(relevant, top, axis=1).sum(1)
    n_relevant = relevant.sum(1)
    return float((hits[n_relevant > 0] / n_relevant[n_relevant > 0]).mean())


def test_default_shapes(planted) -> None:
    ds, _ = planted
    ds.validate()
    assert (ds.n_users, ds.n_items) == (1000, 2000)
    assert {m: f.shape for m, f in ds.modalities.items()} == {"image": (2000, 64), "text": (2000, 32)}
    assert all(f.dtype == np.float32 for f in ds.modalities.values())
    assert 15 < ds.n_interactions / ds.n_users < 25
    assert all(len(ds.split(s)) for s in SPLITS)
    assert 0.7 < len(ds.train) / ds.n_interactions < 0.85  # small users and cold items lower it
    assert ds.relation_names == RELATIONS and ds.n_entities > 0 and len(ds.entity_items()) == 2000


def test_deterministic_per_seed() -> None:
    a, b, c = make_synthetic(seed=5), make_synthetic(seed=5), make_synthetic(seed=6)
    for s in SPLITS:
        np.testing.assert_array_equal(a.split(s), b.split(s))
    np.testing.assert_array_equal(a.modalities["image"], b.modalities["image"])
    np.testing.assert_array_equal(a.kg, b.kg)
    assert not np.array_equal(a.train, c.train)


def test_cold_items_have_features_and_eval_interactions_only(planted) -> None:
    ds, truth = planted
    assert len(truth.cold_items) == 100
    assert ds.item_train_counts()[truth.cold_items].sum() == 0
    evaluated = np.concatenate([ds.valid[:, 1], ds.test[:, 1]])
    assert np.isin(truth.cold_items, evaluated).sum() >= 60


def test_popularity_is_skewed(planted) -> None:
    counts = np.sort(planted[0].item_train_counts())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()


def test_planted_affinity_beats_popularity(planted) -> None:
    ds, truth = planted
    popularity = np.broadcast_to(ds.item_train_counts().astype(np.float64), (ds.n_users, ds.n_items))
    oracle = truth.logits(np.arange(ds.n_users))
    pop_recall, oracle_recall = recall_at(popularity, ds), recall_at(oracle, ds)
    assert oracle_recall > 1.5 * pop_recall > 0


def test_features_carry_cluster_signal(planted) -> None:
    ds, truth = planted
    same = truth.item_cluster[:, None] == truth.item_cluster[None, :]
    np.fill_diagonal(same, False)
    for feat in ds.modalities.values():
        unit = feat / np.linalg.norm(feat, axis=1, keepdims=True)
        cosine = unit @ unit.T
        assert cosine[same].mean() > cosine.mean() + 0.2


def test_kg_encodes_clusters(planted) -> None:
    ds, truth = planted
    in_cluster = ds.kg[ds.kg[:, 1] == RELATIONS.index("in_cluster")]
    agree = (in_cluster[:, 2] - ds.n_items) == truth.item_cluster[in_cluster[:, 0]]
    assert 0.8 < agree.mean() < 1.0


def test_options() -> None:
    ds = make_synthetic(n_users=40, n_items=30, modality_dims={"audio": 5}, kg=False, cold_item_frac=0.0)
    assert list(ds.modalities) == ["audio"] and len(ds.kg) == 0 and ds.n_entities == 0
    paper = make_synthetic(n_users=20, n_items=30, paper_shapes=True)
    assert {m: f.shape[1] for m, f in paper.modalities.items()} == {"image": 4096, "text": 384}


def test_baby_sized_has_babys_shape() -> None:
    ds = make_synthetic(baby_sized=True)  # its generation time is in benchmarks/bench_graph.py's figures
    assert (ds.n_users, ds.n_items) == (19_445, 7_050)
    assert ds.modalities["image"].shape == (7_050, 4096) and ds.modalities["text"].shape == (7_050, 384)
    assert 7 < ds.n_interactions / ds.n_users < 10
