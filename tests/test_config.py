"""Configuration layers, overrides and grid expansion."""

import pytest

from dglmm.config import expand_grid, parse_override, resolve_config


def test_priority_overall_dataset_model_file_cli(tmp_path):
    overall = resolve_config("lightgcn", "unknown-dataset")
    assert overall["train"]["batch_size"] == 2048                        # overall.yaml
    dataset = resolve_config("lightgcn", "synthetic")
    assert dataset["train"]["batch_size"] == 512                         # datasets/synthetic.yaml wins
    user = tmp_path / "mine.yaml"
    user.write_text("train:\n  batch_size: 64\n  lr: 0.01\n")
    from_file = resolve_config("lightgcn", "synthetic", [str(user)])
    assert from_file["train"]["batch_size"] == 64
    cli = resolve_config("lightgcn", "synthetic", [str(user)], ["train.batch_size=32"])
    assert cli["train"]["batch_size"] == 32 and cli["train"]["lr"] == 0.01


def test_bare_keys_resolve_to_their_section():
    assert parse_override("lr=1e-3", "lightgcn") == ("train", "lr", 1e-3)
    assert parse_override("n_layers=2", "lightgcn") == ("model", "n_layers", 2)
    assert parse_override("knn_k=5", "lightgcn") == ("graph", "knn_k", 5)


def test_ambiguous_and_unknown_keys_fail_clearly():
    with pytest.raises(ValueError, match="section.knn_k"):
        parse_override("knn_k=5", "micro")                                # graph.knn_k and model.knn_k
    with pytest.raises(ValueError, match="unknown model option"):
        resolve_config("lightgcn", "synthetic", [], ["model.nope=1"])
    with pytest.raises(ValueError, match="unknown model"):
        resolve_config("nomodel", "synthetic")


def test_lists_sweep_a_grid_but_list_options_need_lists_of_lists():
    config = resolve_config("micro", "synthetic", [], ["train.lr=[0.1,0.01]", "model.lambda_coeff=[0.7,0.9]",
                                                       "model.modalities=[image,text]"])
    points = expand_grid(config, "micro")
    assert len(points) == 4
    assert {(p["train.lr"], p["model.lambda_coeff"]) for p, _ in points} == {
        (0.1, 0.7), (0.1, 0.9), (0.01, 0.7), (0.01, 0.9)}
    assert all(cfg["model"]["modalities"] == ["image", "text"] for _, cfg in points)
    subsets = resolve_config("micro", "synthetic", [], ["model.modalities=[[image],[text],[image,text]]"])
    assert [cfg["model"]["modalities"] for _, cfg in expand_grid(subsets, "micro")] == [
        ["image"], ["text"], ["image", "text"]]
