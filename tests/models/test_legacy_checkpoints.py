"""Checkpoints written before the modality block (parameters renamed, e.g. ``projections.*`` ->
``inputs.projections.*``) load into today's models with the scores the old code computed, and resume."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dglmm.errors import CheckpointError
from dglmm.io import load_checkpoint, load_model_state
from dglmm.train.run import prepare_run
from dglmm.train.trainer import legacy_optimizer_state

HERE = Path(__file__).parents[1] / "data" / "legacy_checkpoints"
_spec = importlib.util.spec_from_file_location("make_fixtures", HERE / "make_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

RENAMED = {"micro_trainable": ("projections.", "features."), "lattice": ("projections.",),
           "tmfun_features": ("projections.",), "slifmr_features": ("projections.",),
           "camgr_trainable": ("align.", "features.")}


def prepared(case: str, tmp_path: Path | None = None, epochs: int = 1):
    model, options = fixtures.CASES[case]
    options = {"trainable_features" if k == "train_features" else k: v for k, v in options.items()}  # renamed
    options = {"embedding_dim": 4, **({"mlp_hidden": 4} if model == "camgr" else {}), **options}
    train = {**fixtures.TRAIN, "epochs": epochs}
    return prepare_run(model, fixtures.dataset(), {"train": train, "model": options}, tmp_path)


def scores_of(model, graph) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.score(model(graph), torch.arange(model.n_users)).numpy()


@pytest.mark.parametrize("case", sorted(fixtures.CASES))
def test_legacy_checkpoint_gives_the_old_scores(case):
    state = load_checkpoint(HERE / f"{case}.pt")
    assert any(k.startswith(RENAMED[case]) for k in state["model"])          # really written before the rename
    run = prepared(case)
    load_model_state(run.model, state, HERE / f"{case}.pt", "synthetic")
    np.testing.assert_allclose(scores_of(run.model, run.graph), np.load(HERE / f"{case}.npy"), rtol=1e-5, atol=1e-6)


def test_loading_stays_strict_about_other_keys():
    state = load_checkpoint(HERE / "micro_trainable.pt")
    run = prepared("micro_trainable")
    for broken in ({**state["model"], "stray.weight": torch.zeros(1)},
                   {k: v for k, v in state["model"].items() if not k.startswith("projections.text")}):
        with pytest.raises(CheckpointError, match="micro_trainable.pt: does not fit"):
            load_model_state(run.model, {"model": broken}, HERE / "micro_trainable.pt", "synthetic")


def test_optimizer_moments_follow_their_parameters():
    """MICRO's trainable features came after the projections; Adam's state is by position, so it is moved."""
    state = load_checkpoint(HERE / "micro_trainable.pt")
    run = prepared("micro_trainable")
    moved = legacy_optimizer_state(run.model, state["model"], state["optimizer"])
    params = list(run.model.named_parameters())
    assert len(moved["state"]) == len(state["optimizer"]["state"]) > 0
    for position, value in moved["state"].items():
        assert value["exp_avg"].shape == params[position][1].shape, params[position][0]
    old_names = list(run.model.upgrade_state_dict(state["model"]))
    old_params = [k for k in old_names if k in dict(run.model.named_parameters())]
    feature = old_params.index("inputs.features.image")
    new_feature = [k for k, _ in run.model.named_parameters()].index("inputs.features.image")
    assert feature != new_feature
    assert moved["state"][new_feature]["exp_avg"] is state["optimizer"]["state"][feature]["exp_avg"]


@pytest.mark.parametrize("case", fixtures.RESUMED)
def test_resume_from_a_legacy_checkpoint(case, tmp_path):
    """Resuming the old epoch-1 checkpoint for a second epoch gives the old code's uninterrupted epoch 2."""
    run = prepared(case, tmp_path, epochs=2)
    (tmp_path / "checkpoint.pt").write_bytes((HERE / f"{case}.pt").read_bytes())
    run.trainer.resume(tmp_path / "checkpoint.pt")
    assert run.trainer.start_epoch == 1                                  # the second epoch is next
    assert set(run.trainer.best_state) == set(run.model.state_dict())    # current names, for best.pt
    run.trainer.fit()
    assert [r["epoch"] for r in run.trainer.history] == [1, 2]
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 1 and any(k.startswith("inputs.") for k in resumed["model"])
    run.model.load_state_dict(resumed["model"])
    np.testing.assert_allclose(scores_of(run.model, run.graph), np.load(HERE / f"{case}.epoch2.npy"),
                               rtol=1e-5, atol=1e-6)
