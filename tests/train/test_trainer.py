"""Trainer: early stopping on validation, run folder, interruption and exact resume."""

import json

import pytest
import yaml

from dglmm.data.synthetic import make_synthetic
from dglmm.models.lightgcn import LightGCN
from dglmm.train.run import resolve_model_config, run_experiment, run_once


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=150, n_items=200, interactions_per_user=10, seed=3)


def config(model="lightgcn", **train):
    overrides = [f"train.{k}={v}" for k, v in {"epochs": 6, "patience": 50, "batch_size": 128, "lr": 0.01,
                                                "checkpoint_every": 1, "progress": False, **train}.items()]
    return resolve_model_config(model, "small", [], overrides)


def test_run_folder_contents_and_test_at_best_validation_epoch(small, tmp_path):
    results = run_once("lightgcn", small, config(), tmp_path / "run", graph_cache=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "resolved.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "results.json",
            "curves.png"} <= files
    resolved = yaml.safe_load((tmp_path / "run" / "resolved.yaml").read_text())
    assert resolved["model_name"] == "lightgcn" and resolved["dglmm_version"]
    assert resolved["train"]["lr"] == 0.01 and resolved["train"]["epochs"] == 6        # what was set
    assert resolved["model"]["n_layers"] == LightGCN.Config().n_layers                 # and every default
    assert set(resolved) >= {"model", "train", "data", "graph"}
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, 7))  # counted from 1
    best = max(history, key=lambda r: r["valid"]["recall@20"])
    assert results["best_epoch"] == best["epoch"]
    assert results["valid"] == best["valid"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"] == results["test"]


def test_early_stopping_uses_patience(small):
    results = run_once("lightgcn", small, config(epochs=200, patience=2), None, graph_cache=False)
    assert results["epochs_run"] == results["best_epoch"] + 2  # both count from 1


def test_interrupted_run_resumes_to_identical_results(small, tmp_path, monkeypatch):
    reference = run_once("lightgcn", small, config(), tmp_path / "ref", graph_cache=False)

    original = LightGCN.on_batch_start
    calls = {"n": 0}
    per_epoch = -(-len(small.train) // 128)

    def interrupt(self, batch_index):
        calls["n"] += 1
        if calls["n"] == 3 * per_epoch + 2:  # second batch of epoch 3: a Ctrl-C mid-epoch
            raise KeyboardInterrupt
        return original(self, batch_index)

    monkeypatch.setattr(LightGCN, "on_batch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_once("lightgcn", small, config(), tmp_path / "cut", graph_cache=False)
    monkeypatch.setattr(LightGCN, "on_batch_start", original)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and not (tmp_path / "cut" / "results.json").exists()

    resumed = run_once("lightgcn", small, config(), tmp_path / "cut", resume=True, graph_cache=False)
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert resumed["valid"] == reference["valid"]
    assert resumed["test"] == reference["test"]
    ref_lines = (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "train_seconds"}  # noqa: E731
    assert [strip(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()] == \
        [strip(x) for x in ref_lines]


def test_grid_selects_on_validation_and_seeds_aggregate(small, tmp_path):
    cfg = config(epochs=3)
    cfg["train"]["lr"] = [0.01, 0.0001]
    summary = run_experiment("mf", small, cfg, tmp_path, seeds=2, graph_cache=False)
    assert len(summary["grid"]) == 2
    best_valid = max(summary["grid"], key=lambda t: t["valid"]["recall@20"])
    assert summary["selected"] == best_valid["point"]
    assert summary["seeds"] == [2024, 2025] and len(summary["runs"]) == 2
    assert summary["test"]["recall@20"]["std"] >= 0
    assert (tmp_path / "summary.json").exists()
