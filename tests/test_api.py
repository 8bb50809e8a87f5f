"""The public API (``import dglmm``), ``dglmm recommend`` and ``dglmm export`` on a small RecBole-token dataset.

References are independent of the code under test: the top-K by a stable argsort of the model's dense scores,
recall@K recomputed from the recommended lists against the test split, and the original ids from the file.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dglmm
from dglmm.cli import main
from dglmm.data.synthetic import make_synthetic
from dglmm.errors import InputError
from dglmm.models import REGISTRY
from dglmm.train.run import prepare_run, resolve_model_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"train.epochs": 3, "train.progress": False, "train.batch_size": 512}


@pytest.fixture(scope="module")
def token_data(tmp_path_factory) -> Path:
    """A RecBole dataset whose users and items are named by tokens (string order differs from the ids')."""
    data = make_synthetic(n_users=150, n_items=200, modality_dims={}, kg=False)
    directory = tmp_path_factory.mktemp("tokens") / "shop"
    directory.mkdir()
    rows = ["user_id:token\titem_id:token\tx_label:float"]
    for label, split in enumerate((data.train, data.valid, data.test)):
        rows += [f"user-{u * 7 % 150}\tsku-{i * 13 % 200}x\t{label}" for u, i in split]
    (directory / "shop.inter").write_text("\n".join(rows) + "\n")
    return directory


@pytest.fixture(scope="module")
def run(token_data, tmp_path_factory):
    return dglmm.fit("lightgcn", token_data, overrides=TRAIN, out=tmp_path_factory.mktemp("runs"))


def file_pairs(directory: Path, label: int) -> set[tuple[str, str]]:
    table = pd.read_csv(directory / "shop.inter", sep="\t", dtype=str)
    rows = table[table["x_label:float"] == str(label)]
    return set(zip(rows["user_id:token"], rows["item_id:token"], strict=True))


def test_import_is_lazy_and_lists_the_api():
    assert {"fit", "load", "compare_runs", "Run", "load_dataset"} <= set(dir(dglmm))
    with pytest.raises(AttributeError):
        dglmm.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", dglmm._PUBLIC)
def test_public_names_are_not_shadowed_by_modules(name):
    """``import dglmm.x`` sets the package attribute ``x``: a public name must not be a module's name."""
    assert not (ROOT / "dglmm" / name).exists() and not (ROOT / "dglmm" / f"{name}.py").exists()
    assert not isinstance(getattr(dglmm, name), type(dglmm))


def test_train_load_recommend_round_trip(run):
    loaded = dglmm.load(run.folder)
    assert loaded.run_dir == run.run_dir and loaded.model_name == "lightgcn"
    assert loaded.evaluate("test") == pytest.approx(run.metrics, rel=1e-6)
    pd.testing.assert_frame_equal(loaded.recommend(k=10), run.recommend(k=10))
    assert "lightgcn" in repr(run)


def test_recommendations_are_the_evaluators_top_k(run):
    data, k = run.dataset, 10
    recs = run.recommend(k=k)
    dense = run.scores().numpy()                              # every user, nothing masked
    masked = dense.copy()
    masked[data.train[:, 0], data.train[:, 1]] = -np.inf
    reference = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    items = data.id_map("item").encode(recs["item"]).reshape(data.n_users, k)
    assert recs.groupby("user", sort=False).size().eq(k).all()
    np.testing.assert_array_equal(items, reference)
    np.testing.assert_allclose(recs["score"].to_numpy().reshape(-1, k),
                               np.take_along_axis(dense, reference, 1), rtol=1e-6)
    # recall@10 of these lists against the test split is the evaluator's
    users = data.id_map("user").encode(recs["user"]).reshape(-1, k)[:, 0]
    test = {(u, i) for u, i in data.test}
    has_train = np.bincount(data.train[:, 0], minlength=data.n_users) > 0
    n_test = np.bincount(data.test[:, 0], minlength=data.n_users)
    recall = [sum((u, i) in test for i in row) / n_test[u] for u, row in zip(users, items, strict=True)
              if n_test[u] and has_train[u]]
    assert np.mean(recall) == pytest.approx(run.evaluate("test")["recall@10"], abs=1e-9)


def test_training_items_are_excluded_unless_asked(run, token_data):
    train = file_pairs(token_data, 0)
    recs = run.recommend(k=30)
    assert not set(zip(recs["user"], recs["item"], strict=True)) & train
    seen = run.recommend(k=30, include_seen=True)
    assert set(zip(seen["user"], seen["item"], strict=True)) & train


def test_original_ids_both_ways(run, token_data):
    recs = run.recommend(users=["user-7", "user-14"], k=5)
    assert list(recs["user"].unique()) == ["user-7", "user-14"]
    assert recs["item"].str.fullmatch(r"sku-\d+x").all()
    all_items = {i for _, i in file_pairs(token_data, 0) | file_pairs(token_data, 1) | file_pairs(token_data, 2)}
    assert set(recs["item"]) <= all_items
    # the same user by token gets the rows its dense id gets
    dense_user = int(run.dataset.id_map("user").encode(["user-7"])[0])
    expected = np.argsort(-_masked_scores(run)[dense_user], kind="stable")[:5]
    assert list(recs["item"][:5]) == list(run.dataset.id_map("item").decode(expected))
    with pytest.raises(InputError, match="unknown user id.*'user-9999'"):
        run.recommend(users=["user-7", "user-9999"])


def _masked_scores(run) -> np.ndarray:
    scores = run.scores().numpy()
    scores[run.dataset.train[:, 0], run.dataset.train[:, 1]] = -np.inf
    return scores


def test_export_reproduces_the_scores(run, tmp_path):
    out = run.export(tmp_path / "export")
    user, item = np.load(out / "user_embeddings.npy"), np.load(out / "item_embeddings.npy")
    user_ids = (out / "user_ids.txt").read_text().split()
    item_ids = (out / "item_ids.txt").read_text().split()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["score_is_inner_product"] and user.shape == (150, manifest["dim"]) and len(item_ids) == 200
    assert user_ids[int(run.dataset.id_map("user").encode(["user-7"])[0])] == "user-7"
    np.testing.assert_allclose(user @ item.T, run.scores().numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def small_multimodal():
    return make_synthetic(n_users=40, n_items=60, modality_dims={"image": 8, "text": 4}, n_kg_attributes=4)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_inner_product_claim_of_every_model(name, small_multimodal):
    config = resolve_model_config(name, "synthetic", [], ["model.embedding_dim=8"])
    prepared = prepare_run(name, small_multimodal, config)
    model = prepared.model.eval()
    with torch.no_grad():
        reps = model(prepared.graph)
        scores, inner = model.score(reps, torch.arange(40)), reps.user @ reps.item.T
    if model.score_is_inner_product():
        torch.testing.assert_close(inner, scores)
    else:
        assert name == "tmfun" and model.export_note
        assert not torch.allclose(inner, scores)


def test_tmfun_without_pair_attention_is_an_inner_product(small_multimodal):
    config = resolve_model_config("tmfun", "synthetic", [], ["model.attention=item", "model.embedding_dim=8"])
    prepared = prepare_run("tmfun", small_multimodal, config)
    assert prepared.model.score_is_inner_product()


# -- the command line ----------------------------------------------------------------------------------------
def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dglmm: error:"), err
    assert all(f in lines[0] for f in fragments), lines[0]


def test_cli_recommend_csv_and_jsonl_match_the_api(run, tmp_path, capsys):
    code, _, err = cli(capsys, "recommend", run.folder, "--users", "user-7,user-14", "-k", 5,
                       "--out", tmp_path / "recs.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "recs.csv", dtype={"user": str, "item": str})
    expected = run.recommend(users=["user-7", "user-14"], k=5)
    pd.testing.assert_frame_equal(table.drop(columns="score"), expected.drop(columns="score"))
    np.testing.assert_allclose(table["score"], expected["score"], rtol=1e-5)
    (tmp_path / "users.txt").write_text("# users\nuser-7\n\nuser-14\n")
    code, _, _ = cli(capsys, "recommend", run.run_dir, "--users", tmp_path / "users.txt", "-k", 5,
                     "--out", tmp_path / "recs.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "recs.jsonl").read_text().splitlines()]
    assert code == 0 and [line["user"] for line in lines] == ["user-7", "user-14"]
    assert lines[0]["items"] == list(expected["item"][:5])


def test_cli_recommend_to_stdout_for_every_user(run, capsys):
    code, out, _ = cli(capsys, "recommend", run.folder, "-k", 3)
    assert code == 0 and out.splitlines()[0] == "user,rank,item,score"
    assert len(out.splitlines()) == 1 + 150 * 3


def test_cli_export(run, tmp_path, capsys):
    code, out, _ = cli(capsys, "export", run.folder, "--out", tmp_path / "vectors")
    assert code == 0 and "inner product" in out
    assert sorted(p.name for p in (tmp_path / "vectors").iterdir()) == sorted(
        ["user_embeddings.npy", "item_embeddings.npy", "user_ids.txt", "item_ids.txt", "export.json"])


def test_cli_bad_inputs_give_one_line(run, tmp_path, capsys):
    code, _, err = cli(capsys, "recommend", run.folder, "--users", "user-7,nobody")
    assert_one_line_error(code, err, "unknown user id", "'nobody'")
    code, _, err = cli(capsys, "recommend", run.folder, "--users", tmp_path / "missing.txt")
    assert_one_line_error(code, err, "missing.txt", "no such file")
    code, _, err = cli(capsys, "recommend", run.folder, "-k", 201)
    assert_one_line_error(code, err, "k=201", "200 items")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = cli(capsys, "recommend", run.folder, "--out", blocker / "recs.csv")
    assert_one_line_error(code, err, "cannot write")
    code, _, err = cli(capsys, "export", run.folder, "--out", blocker / "out")
    assert_one_line_error(code, err, "cannot write")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run.run_dir, unfinished)
    (unfinished / "results.json").unlink()
    for command in ("recommend", "export"):
        code, _, err = cli(capsys, command, unfinished)
        assert_one_line_error(code, err, "not a finished run", "--resume")
    code, _, err = cli(capsys, "recommend", tmp_path)
    assert_one_line_error(code, err, "not a run folder")
    moved = tmp_path / "moved"
    shutil.copytree(run.run_dir, moved)
    (moved / "config.yaml").write_text((moved / "config.yaml").read_text().replace("shop.inter", "gone.inter"))
    code, _, err = cli(capsys, "recommend", moved)
    assert_one_line_error(code, err, "gone.inter", "cannot be loaded", "-d DATASET")


def test_several_seeds_need_a_choice(token_data, tmp_path, capsys):
    run = dglmm.fit("mf", token_data, overrides={**TRAIN, "train.epochs": 1}, seeds=2, out=tmp_path)
    assert run.side == run.folder and len(run.seed_dirs) == 2
    code, _, err = cli(capsys, "recommend", run.folder, "-k", 2)
    assert_one_line_error(code, err, "holds 2 seeds")
    assert cli(capsys, "recommend", run.folder, "-k", 2, "--seed", 1)[0] == 0
    assert dglmm.load(run.folder, seed=1).run_dir == run.folder / "seed1"
    code, _, err = cli(capsys, "recommend", run.folder, "--seed", 2)
    assert_one_line_error(code, err, "no seed2", "seed0, seed1")
    table = dglmm.compare_runs(run, run)
    assert set(table["metric"]) == {"recall@20", "ndcg@20", "precision@20"} and (table["diff"] == 0).all()


# -- notebooks and recipes use the public API only -----------------------------------------------------------
PRIVATE_IMPORT = re.compile(r"^\s*(from\s+dglmm\.[\w.]+\s+import|import\s+dglmm\.)", re.MULTILINE)


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_the_public_api(path):
    assert not PRIVATE_IMPORT.findall(notebook_code(path)), f"{path.name} imports dglmm internals"


RECIPE_IMPORT = re.compile(r"^\s*(?:from\s+(dglmm(?:\.[\w.]+)?)\s+import|import\s+(dglmm(?:\.[\w.]+)?))", re.MULTILINE)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.py")), ids=lambda p: p.name)
def test_recipes_import_only_dglmm_and_the_recipe_kit(path):
    modules = {a or b for a, b in RECIPE_IMPORT.findall(path.read_text())}
    assert modules and modules <= {"dglmm", "dglmm.recipe"}, f"{path.name} imports {sorted(modules)}"


def test_the_recipe_kit_resolves_every_name():
    import dglmm.recipe as kit

    assert all(callable(getattr(kit, name)) or name in {"plt", "LADDER"} for name in kit.KIT)


def _cold_column(name: str, dataset, item: int) -> torch.Tensor:
    config = resolve_model_config(name, "synthetic", [], ["model.embedding_dim=8"])
    prepared = prepare_run(name, dataset, config, graph_cache=False)
    with torch.no_grad():
        model = prepared.model.eval()
        return model.score(model(prepared.graph), torch.arange(dataset.n_users))[:, item]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_cold_items_depend_on_content_exactly_for_the_models_the_help_names(name, small_multimodal):
    """A cold item's scores change with its features and KG links for the models listed as able to recommend
    cold items, and not for the ID-only ones (same seed, same initial parameters)."""
    import dataclasses

    from dglmm.recommend import COLD_ITEM_MODELS

    data = small_multimodal
    item = int(data.cold_items()[0])
    rng = np.random.default_rng(1)
    feats = {m: f.copy() for m, f in data.modalities.items()}
    for f in feats.values():
        f[item] = 3 * rng.standard_normal(f.shape[1]).astype(np.float32)
    kg = data.kg.copy()
    heads = kg[:, 0] == item
    kg[heads, 2] = data.n_items + (kg[heads, 2] - data.n_items + 1) % data.n_entities
    other = dataclasses.replace(data, modalities=feats, kg=kg)
    changed = not torch.allclose(_cold_column(name, data, item), _cold_column(name, other, item))
    assert changed == (name in COLD_ITEM_MODELS)


def test_the_recommend_help_names_the_cold_item_models(capsys):
    from dglmm.recommend import COLD_ITEM_MODELS

    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    text = " ".join(capsys.readouterr().out.split()).lower().replace("-", "")
    assert all(name in text for name in COLD_ITEM_MODELS)


def test_integer_id_datasets_keep_their_ids(mmrec_dir, tmp_path, capsys):
    """MMRec (like LATTICE and KGAT) files use the dense integer ids themselves."""
    run = dglmm.fit("mf", mmrec_dir, overrides={**TRAIN, "train.epochs": 1}, out=tmp_path)
    code, out, err = cli(capsys, "recommend", run.folder, "--users", "2,0", "-k", 6, "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["user"] for line in lines] == [2, 0], err
    train = {(int(u), int(i)) for u, i in run.dataset.train}
    for line in lines:
        assert all(isinstance(i, int) and (line["user"], i) not in train for i in line["items"])
        assert len(line["items"]) == 6 - sum(u == line["user"] for u, _ in train)
    assert 5 in lines[0]["items"]                                  # the cold item is recommendable
    code, _, err = cli(capsys, "recommend", run.folder, "--users", "3", "-k", 2)
    assert_one_line_error(code, err, "unknown user id", "'3'")


def test_id_map_both_ways():
    from dglmm.data.ids import IdMap

    tokens = IdMap("item", 3, np.array(["b", "a", "c"]), "toy")
    assert tokens.encode(["c", " a "]).tolist() == [2, 1] and tokens.decode(np.array([0, 2])).tolist() == ["b", "c"]
    integers = IdMap("user", 4)
    assert integers.encode(["3", 0, "1"]).tolist() == [3, 0, 1] and integers.all().tolist() == [0, 1, 2, 3]
    for bad in (["4"], ["-1"], ["x"], ["1.5"], ["99999999999999999999"]):
        with pytest.raises(InputError, match="unknown user id"):
            integers.encode(bad)


def test_a_grid_stands_for_its_selected_point(token_data, tmp_path, capsys):
    run = dglmm.fit("mf", token_data, overrides={**TRAIN, "train.epochs": 1, "train.lr": [0.05, 0.0001]},
                    out=tmp_path)
    selected = [g["point"] for g in run.summary["grid"]].index(run.summary["selected"])
    assert run.run_dir == run.folder / f"point{selected}" / "seed0"
    assert dglmm.load(run.folder).run_dir == run.run_dir
    assert cli(capsys, "recommend", run.folder, "-k", 2, "--users", "user-7")[0] == 0
