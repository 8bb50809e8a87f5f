"""Robustness options corrupt training data only; items without a modality get no kNN edges and are masked."""

import numpy as np
import pytest
import torch

from dglmm.data.robustness import perturb
from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import GraphConfig, build_graph, similar_etype
from dglmm.models import REGISTRY, make_config
from dglmm.train.run import resolve_model_config, run_once
from tests.helpers import train_terms


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=200, n_items=300, interactions_per_user=10, seed=7)


def pairs(a):
    return set(map(tuple, a.tolist()))


@pytest.mark.parametrize("share", [0.05, 0.2])
def test_noisy_interactions_replace_the_share_and_leave_evaluation_alone(data, share):
    noisy = perturb(data, interactions=share, seed=1)
    assert np.array_equal(noisy.valid, data.valid) and np.array_equal(noisy.test, data.test)
    assert len(noisy.train) == len(data.train)
    changed = pairs(data.train) - pairs(noisy.train)
    assert len(changed) == round(share * len(data.train))
    new = pairs(noisy.train) - pairs(data.train)
    assert not new & (pairs(data.valid) | pairs(data.test))               # no evaluation pair leaks in
    assert np.array_equal(np.bincount(noisy.train[:, 0], minlength=data.n_users),
                          np.bincount(data.train[:, 0], minlength=data.n_users))   # users keep their activity


def test_noisy_kg_changes_only_tails(data):
    noisy = perturb(data, kg=0.1, seed=2)
    same_head_rel = (noisy.kg[:, :2] == data.kg[:, :2]).all()
    changed = (noisy.kg[:, 2] != data.kg[:, 2]).sum()
    assert same_head_rel and changed == round(0.1 * len(data.kg))
    assert noisy.kg[:, 2].max() < data.n_items + data.n_entities


def test_dropped_features_give_no_knn_edges_and_models_mask_them(data):
    noisy = perturb(data, features=0.2, seed=3)
    missing = ~noisy.feature_mask("image")
    assert missing.sum() == round(0.2 * data.n_items)
    assert np.array_equal(missing, ~noisy.feature_mask("text"))          # the same items lose every modality
    graph = build_graph(noisy, GraphConfig(knn_k=5), cache_dir=False)
    for m in ("image", "text"):
        src, dst = graph.edges(etype=similar_etype(m))
        assert not missing[src.numpy()].any() and not missing[dst.numpy()].any()
    cls = REGISTRY["micro"]
    torch.manual_seed(0)
    model = cls(noisy, graph, make_config(cls, {"embedding_dim": 8, "knn_k": 5}))
    projected = model.inputs.projected(graph)
    assert all(not p[torch.from_numpy(missing)].any() for p in projected)   # W e + b masked to 0
    model.eval()
    model(graph)                                                        # evaluation rebuilds the learned graphs
    for learned in model.learned.values():
        src, dst, _ = learned.relations[0]
        assert not missing[src.numpy()].any() and not missing[dst.numpy()].any()
    vbpr = REGISTRY["vbpr"]
    v = vbpr(noisy, graph, make_config(vbpr, {"embedding_dim": 8}))
    items = torch.from_numpy(np.flatnonzero(missing)[:3])
    vectors = v._item_vectors(v._features(graph), items)
    assert not vectors[:, 8:16].any() and not vectors[:, -1].any()     # no content factor, no content bias
    assert torch.isfinite(sum(train_terms(model, graph, [0, 1], [2, 3], [4, 5]).values()))


def test_robustness_options_train_end_to_end(data):
    config = resolve_model_config("lightgcn", "synthetic", [], [
        "train.epochs=2", "train.progress=false", "data.noise_interactions=0.1", "data.noise_kg=0.1",
        "data.drop_features=0.1"])
    results = run_once("lightgcn", data, config, None, graph_cache=False)
    assert results["dataset"].startswith(data.name + "-noise(")


def test_camgr_masks_items_without_a_modality(data):
    noisy = perturb(data, features=0.2, seed=3)
    missing = torch.from_numpy(~noisy.feature_mask("image"))
    graph = build_graph(noisy, GraphConfig(knn_k=5), cache_dir=False)
    cls = REGISTRY["camgr"]
    torch.manual_seed(0)
    model = cls(noisy, graph, make_config(cls, {"embedding_dim": 8, "knn_k": 5}))
    for h in model.purified(graph).values():
        assert not h[missing].any()
    for src, dst, _ in model.semantic.relations:
        assert not missing[src].any() and not missing[dst].any()
    assert torch.isfinite(sum(train_terms(model, graph, [0, 1], [2, 3], [4, 5]).values()))
