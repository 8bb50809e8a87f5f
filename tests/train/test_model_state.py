"""Graphs a model derives during training are model state: evaluate and resume see the graphs of their epoch."""

import json

import pytest
import torch

from dglmm.cli import main
from dglmm.data.synthetic import make_synthetic
from dglmm.models.micro import MICRO
from dglmm.train.run import evaluate_run, resolve_model_config, run_once

MODELS = ["lattice", "micro"]


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=120, n_items=150, interactions_per_user=10, seed=5)


def config(model, **model_options):
    overrides = ["train.epochs=3", "train.patience=50", "train.batch_size=128", "train.lr=0.01",
                 "train.checkpoint_every=1", "train.progress=false",
                 *(["model.cl_max_items=64"] if model == "micro" else []),   # LATTICE has no contrastive term
                 *(f"model.{k}={v}" for k, v in model_options.items())]
    return resolve_model_config(model, "small", [], overrides)


@pytest.mark.parametrize("model", MODELS)
def test_evaluate_reproduces_results_exactly(model, small, tmp_path, monkeypatch):
    run = tmp_path / "run"
    results = run_once(model, small, config(model), run, graph_cache=False)
    saved = json.loads((run / "results.json").read_text())
    best = torch.load(run / "best.pt", weights_only=True)
    assert any(k.endswith("_extra_state") for k in best["model"])      # the learned graphs travel with best.pt
    monkeypatch.setattr("dglmm.data.readers.load_dataset", lambda spec: small)
    assert evaluate_run(run) == saved["test"] == results["test"]


def test_evaluate_cli_prints_the_run_metrics(small, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    results = run_once("lattice", small, config("lattice"), run, graph_cache=False)
    monkeypatch.setattr("dglmm.data.readers.load_dataset", lambda spec: small)
    assert main(["evaluate", str(run)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(printed["recall@20"]) == pytest.approx(results["test"]["recall@20"], abs=5e-5)


@pytest.mark.parametrize("model,options", [("lattice", {}), ("micro", {}),
                                           ("micro", {"graph_update": "every_n", "graph_update_every": 2})])
def test_interrupted_run_resumes_to_identical_results(model, options, small, tmp_path, monkeypatch):
    cfg = config(model, **options)
    reference = run_once(model, small, cfg, tmp_path / "ref", graph_cache=False)
    per_epoch = -(-len(small.train) // 128)
    original, calls = MICRO.on_batch_start, {"n": 0}

    def interrupt(self, batch_index):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:  # third batch of epoch 1 (not a rebuild epoch of every_n=2): Ctrl-C
            raise KeyboardInterrupt
        return original(self, batch_index)

    monkeypatch.setattr(MICRO, "on_batch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_once(model, small, cfg, tmp_path / "cut", graph_cache=False)
    monkeypatch.setattr(MICRO, "on_batch_start", original)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = run_once(model, small, cfg, tmp_path / "cut", resume=True, graph_cache=False)
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert resumed["valid"] == reference["valid"]
    assert resumed["test"] == reference["test"]


def test_best_epoch_test_uses_that_epochs_graph(small):
    """The learned graph restored with the best state is the one the best epoch validated with."""
    cfg = config("micro", graph_update="every_n", graph_update_every=2)
    from dglmm.train.run import prepare_run

    prepared = prepare_run("micro", small, cfg)
    trainer = prepared.trainer
    trainer.fit()
    graphs = {name: g.get_extra_state() for name, g in prepared.model.learned.items()}
    state = {k: v for k, v in trainer.best_state.items() if k.endswith("_extra_state")}
    assert state
    for name, extra in graphs.items():
        saved = state[f"learned.{name}._extra_state"]
        assert torch.equal(saved["src"], extra["src"]) and torch.equal(saved["weight"], extra["weight"])
