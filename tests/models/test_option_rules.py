"""Option rules: declared activity conditions, inactive options set by the user, grids without repeated
points, renamed options, and hostile values for every model option (never an internal error)."""

from __future__ import annotations

import dataclasses
import types
import warnings

import pytest
import torch

from dglmm.config import expand_grid, instantiate
from dglmm.data.synthetic import make_synthetic
from dglmm.errors import InputError
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.models import REGISTRY, Batch, make_config
from dglmm.options import Above, Below, OptionError, inactive_options, renamed
from dglmm.train.run import model_sections, resolve_model_config, resolved_config
from tests.helpers import cli_one_line_error


def test_an_option_that_cannot_take_effect_is_a_one_line_error(capsys, tmp_path):
    line = cli_one_line_error(capsys, "train", "-m", "micro", "-d", "synthetic", "--out", str(tmp_path),
                              "--set", "model.lambda_coeff=1", "--set", "model.knn_k=5")
    assert "model.knn_k has no effect" in line and "model.lambda_coeff < 1" in line
    assert not list(tmp_path.iterdir())  # nothing was trained


@pytest.mark.parametrize("model,sets,named", [
    ("micro", ["model.lambda_coeff=1", "model.graph_update=batch"], "model.graph_update"),
    ("micro", ["model.graph_update_every=3"], "model.graph_update_every"),   # needs graph_update=every_n
    ("micro", ["model.backbone=mf", "model.cf_layers=3"], "model.cf_layers"),
    ("tmfun", ["model.variant=tmfun-mm", "model.cl_weight=0.1"], "model.cl_weight"),
    ("kgat", ["model.kg_loss=false", "model.kg_batch_size=10"], "model.kg_batch_size"),
    ("kgat", ["model.kg_schedule=joint", "model.kg_optimizer=shared"], "model.kg_optimizer"),
    ("camgr", ["model.n_key_tokens=10"], "model.n_key_tokens"),                # token_set='all'
    ("slifmr", ["model.variant=w/o KG", "model.kg_layers=1"], "model.kg_layers"),
])
def test_inactive_options_set_by_the_user(model, sets, named, capsys, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    line = cli_one_line_error(capsys, "train", "-m", model, "-d", "synthetic", "--out", str(tmp_path), *args)
    assert f"{named} has no effect" in line


def test_a_config_file_counts_as_set_by_the_user(capsys, tmp_path):
    path = tmp_path / "micro.yaml"
    path.write_text("model:\n  lambda_coeff: 1.0\n  knn_k: 7\n")
    line = cli_one_line_error(capsys, "train", "-m", "micro", "-d", "synthetic", "-c", str(path),
                              "--out", str(tmp_path / "runs"))
    assert "model.knn_k has no effect" in line


def test_an_option_active_at_some_grid_points_is_allowed_and_points_are_not_repeated():
    config = resolve_model_config("micro", "synthetic", [], ["model.lambda_coeff=[0.7,1.0]",
                                                             "model.knn_k=[5,10]"])
    points = expand_grid(config, model_sections("micro"))
    # (1.0, 5) and (1.0, 10) train the same model: one of them is kept
    assert [(p["model.lambda_coeff"], p["model.knn_k"]) for p, _ in points] == [(0.7, 5), (0.7, 10), (1.0, 5)]


def test_inactivity_follows_the_conditions_and_is_recorded_in_resolved_yaml():
    sections = {"model": make_config(REGISTRY["micro"], {"lambda_coeff": 1.0, "graph_update": "every_n"}),
                "train": instantiate(dataclasses.make_dataclass("T", []), {}, "train")}
    inactive = inactive_options(sections)
    assert {"model.knn_k", "model.graph_update", "model.graph_update_every"} <= set(inactive)
    assert "itself inactive" in inactive["model.graph_update_every"]
    assert "model.cl_weight" not in inactive
    prepared = types.SimpleNamespace(model=types.SimpleNamespace(config=sections["model"]),
                                     trainer=types.SimpleNamespace(config=instantiate(
                                         model_sections("micro")["train"], {})))
    resolved = resolved_config("micro", prepared, {})
    assert "model.knn_k" in resolved["inactive"] and "model.lambda_coeff" not in resolved["inactive"]


def test_number_conditions():
    assert 0.5 in Below(1.0) and 1.0 not in Below(1.0) and True not in Below(2.0)
    assert 0.1 in Above(0.0) and 0.0 not in Above(0.0)
    assert str(Below(1.0)) == "< 1" and list(Below(1.0)) == [Below(1.0)]


def test_renamed_option_keeps_working_with_one_warning():
    @dataclasses.dataclass
    class C:
        new: int = __import__("dglmm.options", fromlist=["option"]).option(1, "x", renamed_from="old")

    with pytest.warns(FutureWarning, match="model.old is deprecated, use model.new"):
        assert renamed(C, {"old": 3}) == {"new": 3}
    with pytest.raises(OptionError, match="former name"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        renamed(C, {"old": 3, "new": 4})


# -- hostile values: every model option, a handful of wrong values each ------------------------------------------

HOSTILE = ["zzz", -1, 0, 10**9, 0.5, True, [], [0], None, [1.0, -2.0], ["image", "nope"]]


@pytest.fixture(scope="module")
def small():
    data = make_synthetic(n_users=40, n_items=30, interactions_per_user=4, seed=3, n_kg_attributes=4)
    return data, build_graph(data, GraphConfig(knn_k=3), cache_dir=False)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_wrong_model_option_value_is_never_an_internal_error(name, small):
    """Every option of every model with each hostile value: an input error, or a model that trains a step."""
    data, graph = small
    cls = REGISTRY[name]
    cheap = {"embedding_dim": 4}
    for field in dataclasses.fields(cls.Config):
        if field.name in ("pretrain", "embedding_dim", "attention_chunk", "cl_chunk_size",
                          "layer_sizes", "mlp_hidden", "relation_dim", "kg_relation_dim"):
            continue  # paths are checked in their own tests; sizes of 10**9 would only allocate
        for value in HOSTILE:
            try:  # a value the config and the model accept must also train a step and evaluate
                model = cls(data, graph, make_config(cls, {**cheap, field.name: value}))
                batch = Batch(torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8]))
                model.on_epoch_start(1, graph)
                model.on_batch_start(0)
                sum(model.loss(model.training_forward(graph, batch), batch).values()).backward()
                model.eval()
                with torch.no_grad():
                    model.score(model(graph), torch.tensor([0, 1]))
            except InputError:
                pass
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{name}: model.{field.name}={value!r} raised {type(exc).__name__}: {exc}")


def test_the_backbone_choices_are_the_models_that_implement_the_protocol():
    from dglmm.models import BACKBONES

    assert {n for n, c in REGISTRY.items() if c.can_be_backbone} == set(BACKBONES)
