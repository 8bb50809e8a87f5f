"""Configuration layers, overrides, grid expansion, and the checks of every declared option."""

import subprocess
import sys

import pytest

from dglmm.config import (
    TrainConfig,
    expand_grid,
    instantiate,
    parse_override,
    resolve_config,
    section_classes,
)
from dglmm.models import REGISTRY
from dglmm.options import OptionError
from dglmm.train.run import model_sections, resolve_model_config


def resolve(model, *args):
    return resolve_config(model, *args, model_config=REGISTRY[model].Config)


def test_priority_overall_dataset_model_file_cli(tmp_path):
    overall = resolve("lightgcn", "unknown-dataset")
    assert overall["train"]["batch_size"] == 2048                        # overall.yaml
    dataset = resolve("lightgcn", "synthetic")
    assert dataset["train"]["batch_size"] == 512                         # datasets/synthetic.yaml wins
    user = tmp_path / "mine.yaml"
    user.write_text("train:\n  batch_size: 64\n  lr: 0.01\n")
    from_file = resolve("lightgcn", "synthetic", [str(user)])
    assert from_file["train"]["batch_size"] == 64
    cli = resolve("lightgcn", "synthetic", [str(user)], ["train.batch_size=32"])
    assert cli["train"]["batch_size"] == 32 and cli["train"]["lr"] == 0.01


def test_bare_keys_resolve_to_their_section():
    sections = model_sections("lightgcn")
    assert parse_override("lr=1e-3", sections) == ("train", "lr", 1e-3)
    assert parse_override("n_layers=2", sections) == ("model", "n_layers", 2)
    assert parse_override("knn_k=5", sections) == ("graph", "knn_k", 5)


def test_ambiguous_and_unknown_keys_fail_clearly():
    with pytest.raises(ValueError, match="section.knn_k"):
        parse_override("knn_k=5", model_sections("micro"))               # graph.knn_k and model.knn_k
    with pytest.raises(ValueError, match="unknown model option"):
        resolve("lightgcn", "synthetic", [], ["model.nope=1"])
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model_config("nomodel", "synthetic")


def test_lists_sweep_a_grid_but_list_options_need_lists_of_lists():
    config = resolve("micro", "synthetic", [], ["train.lr=[0.1,0.01]", "model.lambda_coeff=[0.7,0.9]",
                                                "model.modalities=[image,text]"])
    points = expand_grid(config, model_sections("micro"))
    assert len(points) == 4
    assert {(p["train.lr"], p["model.lambda_coeff"]) for p, _ in points} == {
        (0.1, 0.7), (0.1, 0.9), (0.01, 0.7), (0.01, 0.9)}
    assert all(cfg["model"]["modalities"] == ["image", "text"] for _, cfg in points)
    subsets = resolve("micro", "synthetic", [], ["model.modalities=[[image],[text],[image,text]]"])
    assert [cfg["model"]["modalities"] for _, cfg in expand_grid(subsets, model_sections("micro"))] == [
        ["image"], ["text"], ["image", "text"]]


BAD_VALUES = {
    "train.lr=abc": "train.lr must be a number",
    "train.lr=0": "train.lr must be > 0",
    "train.lr=-1e-3": "train.lr must be > 0",
    "train.patience=-1": "train.patience must be >= 0",
    "train.epochs=0": "train.epochs must be >= 1",
    "train.batch_size=0": "train.batch_size must be >= 1",
    "train.eval_every=0": "train.eval_every must be >= 1",
    "train.ks=[0,20]": "train.ks must be >= 1",
    "train.negative_pool=train_item": "train.negative_pool must be one of all, train_items",
    "train.metric=recall@30": "train.metric must be one of",
    "train.metric=recal@20": "train.metric must be one of",
    "train.progress=maybe": "train.progress must be true or false",
    "model.n_layers=-1": "model.n_layers must be >= 0",
    "model.n_layers=1.5": "model.n_layers must be an integer",
    "model.embedding_dim=0": "model.embedding_dim must be >= 1",
    "model.reg_weight=-1": "model.reg_weight must be >= 0",
    "model.adjacency=rw": "model.adjacency must be one of sym, rw_self_loops",
    "model.backend=gpu": "model.backend must be one of csr, dgl",
    "graph.knn_k=0": "graph.knn_k must be >= 1",
    "graph.knn_norm=symm": "graph.knn_norm must be one of sym, rw, none",
    "data.split=cold": "data.split must be one of given, cold_start",
    "data.cold_frac=1": "data.cold_frac must be > 0 and < 1",
}


@pytest.mark.parametrize("override", list(BAD_VALUES))
def test_bad_values_name_the_option(override):
    with pytest.raises(OptionError) as info:
        resolve("lightgcn", "synthetic", [], [override])
    assert BAD_VALUES[override] in str(info.value) and "\n" not in str(info.value)


def test_ngcf_layer_combination_and_dropout_are_checked():
    with pytest.raises(OptionError, match="model.layer_combination must be one of concat, mean; got 'sum'"):
        resolve("ngcf", "synthetic", [], ["model.layer_combination=sum"])
    with pytest.raises(OptionError, match=r"model.message_dropout must be >= 0 and <= 1"):
        resolve("ngcf", "synthetic", [], ["model.message_dropout=1.5"])


def test_every_point_of_a_sweep_is_checked():
    with pytest.raises(OptionError, match="train.lr must be > 0; got 0.0"):
        resolve("mf", "synthetic", [], ["train.lr=[0.01,0]"])


def test_instantiate_coerces_yaml_values():
    cfg = instantiate(TrainConfig, {"lr": "1e-3", "ks": [5, 10], "metric": "ndcg@5"})
    assert cfg.lr == 0.001 and cfg.ks == (5, 10) and cfg.metric == "ndcg@5"
    assert section_classes(REGISTRY["mf"].Config)["model"] is REGISTRY["mf"].Config


def test_config_module_imports_neither_models_nor_trainer():
    code = ("import sys, dglmm.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('dglmm.models', 'dglmm.train'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the shipped model layer (dglmm/configs/models/<model>.yaml) ------------------------------------------------
def _model_file(name):
    from importlib import resources
    return resources.files("dglmm.configs") / "models" / f"{name}.yaml"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_ships_its_defaults_as_a_config_file(name):
    """The file is the declared options as ``dglmm models NAME --yaml`` writes them: it cannot drift from them."""
    from dglmm.cli import summary_line
    from dglmm.config import model_layer_text

    path = _model_file(name)
    cls = REGISTRY[name]
    expected = model_layer_text(name, cls.Config, summary_line(cls).rstrip("."))
    assert path.is_file(), f"write it: dglmm models {name} --yaml > dglmm/configs/models/{name}.yaml"
    assert path.read_text() == expected, f"regenerate: dglmm models {name} --yaml > dglmm/configs/models/{name}.yaml"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_copy_of_the_model_file_is_a_valid_c_file_that_changes_nothing(name, tmp_path):
    import dataclasses

    import yaml

    from dglmm.options import build

    copy = tmp_path / f"{name}.yaml"
    copy.write_text(_model_file(name).read_text())
    shipped = yaml.safe_load(copy.read_text())["model"]
    with_copy = resolve(name, "synthetic", [str(copy)])        # inactive options are commented out: no error
    without = resolve(name, "synthetic")
    sections = model_sections(name)
    (_, point_with), (_, point_without) = expand_grid(with_copy, sections) + expand_grid(without, sections)
    effective = {s: dataclasses.asdict(build(sections[s], point_with.get(s, {}), s)) for s in sections}
    assert effective == {s: dataclasses.asdict(build(sections[s], point_without.get(s, {}), s)) for s in sections}
    assert without["model"] == {}       # the shipped file restates the defaults: it adds nothing to config.yaml
    defaults = dataclasses.asdict(build(REGISTRY[name].Config, {}, "model"))
    assert dataclasses.asdict(build(REGISTRY[name].Config, shipped, "model")) == defaults
    assert set(shipped) <= set(defaults)


def test_the_model_layer_sits_between_the_dataset_file_and_c_files(tmp_path, monkeypatch):
    """overall < dataset < model file < -c < --set: a model layer that set an option would win over the
    dataset's file and lose to the user's."""
    import dglmm.config as config

    real = config._packaged

    def packaged(kind, name):
        layer = real(kind, name)
        if kind == "models":
            layer = config.merge(layer, {"train": {"batch_size": 256}, "model": {"n_layers": 1}})
        return layer

    monkeypatch.setattr(config, "_packaged", packaged)
    layered = resolve("lightgcn", "synthetic")
    assert layered["train"]["batch_size"] == 256 and layered["model"] == {"n_layers": 1}  # over datasets/synthetic
    assert layered["train"]["lr"] == 0.005                                                 # the dataset's, kept
    user = tmp_path / "mine.yaml"
    user.write_text("model:\n  n_layers: 2\n")
    assert resolve("lightgcn", "synthetic", [str(user)])["model"]["n_layers"] == 2
    assert resolve("lightgcn", "synthetic", [str(user)], ["model.n_layers=4"])["model"]["n_layers"] == 4


def test_models_yaml_needs_a_name():
    result = subprocess.run([sys.executable, "-m", "dglmm", "models", "--yaml"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("dglmm: error: --yaml")


def test_tuned_config_leaves_out_options_without_effect():
    """A trial that turns KGAT's TransR loss off must not write the model layer's ``kg_*`` into config.yaml,
    which ``dglmm train -c`` would reject."""
    from dglmm.tune.study import _without_inactive

    config = resolve("kgat", "synthetic")
    config["model"]["kg_loss"] = False
    kept = _without_inactive(config, model_sections("kgat"))
    assert kept["model"]["kg_loss"] is False and "kg_batch_size" not in kept["model"]
    assert kept["train"] == config["train"]
