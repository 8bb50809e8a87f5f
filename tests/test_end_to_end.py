"""End-to-end: models trained a few epochs on the synthetic data must learn its planted structure."""

import pytest

from dglmm.data.synthetic import make_synthetic
from dglmm.train.evaluate import evaluate_popularity
from dglmm.train.run import resolve_model_config, run_once

FAST = ["train.progress=false", "train.epochs=40", "train.patience=8"]


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic()


def train(model, dataset, *overrides):
    config = resolve_model_config(model, "synthetic", [], [*FAST, *overrides])
    return run_once(model, dataset, config, None, graph_cache=False)


@pytest.fixture(scope="module")
def lightgcn(synthetic):
    return train("lightgcn", synthetic)


@pytest.mark.parametrize("model", ["mf", "ngcf", "vbpr"])
def test_baselines_beat_popularity_clearly(model, synthetic):
    popularity = evaluate_popularity(synthetic)["recall@20"]
    assert train(model, synthetic)["test"]["recall@20"] > 1.2 * popularity


def test_lightgcn_beats_popularity_clearly(lightgcn, synthetic):
    assert lightgcn["test"]["recall@20"] > 1.2 * evaluate_popularity(synthetic)["recall@20"]


@pytest.mark.parametrize("model", ["lattice", "micro"])
def test_multimodal_models_beat_lightgcn(model, synthetic, lightgcn):
    """The planted features carry signal that LightGCN cannot use."""
    result = train(model, synthetic, "model.cl_max_items=512")
    assert result["test"]["recall@20"] > lightgcn["test"]["recall@20"] + 0.005


def test_micro_beats_lightgcn_on_cold_items_by_a_wide_margin(synthetic):
    cold = ["data.split=cold_start"]
    micro = train("micro", synthetic, *cold, "model.cl_max_items=512")["test"]["recall@20"]
    light = train("lightgcn", synthetic, *cold)["test"]["recall@20"]
    assert micro > 3 * light and micro - light > 0.2
