"""The paper recipes run end to end (smoke runs of their tables on the synthetic data)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str = "micro"):
    """``recipes/<name>.py`` as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_micro_recipe_quick_tables(tmp_path, capsys):
    recipe = load_recipe()
    code = recipe.main(["--quick", "--tables", "4", "cold", "--only", "MF", "LightGCN", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Table 4 - overall comparison" in out and "Cold start" in out
    tables = next(tmp_path.glob("synthetic-4-cold-MF-LightGCN-*")) / "tables.txt"
    text = tables.read_text()
    assert "LightGCN" in text and "0.0698" in text  # our row beside the paper's Baby number
    assert "compare orderings, not values" in text


def test_slifmr_recipe_quick_tables(tmp_path, capsys):
    recipe = load_recipe("slifmr")
    code = recipe.main(["--quick", "--quick-epochs", "2", "--tables", "2", "3", "fig5", "--only", "LightGCN", "KGAT",
                        "SLIF-MR", "w/o KG&MM", "sum", "--inter-max-items", "64",
                        "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Table II - overall comparison" in out and "Table III - ablation" in out and "Fig. 5" in out
    if "kgat" not in recipe.dglmm.model_names():
        assert "model 'kgat' is not registered" in out
    folder = next(tmp_path.glob("synthetic-2-3-fig5-*"))
    text = (folder / "tables.txt").read_text()
    assert "SLIF-MR" in text and "0.1891" in text and "0.1248" in text  # our rows beside the paper's Amazon-Book
    assert "compare orderings, not values" in text
    assert "KG link check (dglmm data kg-check, 19 permutations): pooled ratio" in text
    assert "p 0.05: items that share a KG entity share more users than under random links." in text
    assert (folder / "fig5_aggregation.png").stat().st_size > 0


def test_slifmr_recipe_robustness_figure(tmp_path, capsys):
    recipe = load_recipe("slifmr")
    recipe.FIG7_NOISE = {"knowledge noise": "data.noise_kg"}       # one noise type keeps the smoke test short
    code = recipe.main(["--quick", "--quick-epochs", "1", "--tables", "fig7", "--inter-max-items", "64",
                        "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Fig. 7 - robustness" in out and "20%" in out
    assert (next(tmp_path.glob("synthetic-fig7-*")) / "fig7_robustness.png").stat().st_size > 0
def test_camgr_recipe_quick_every_table(tmp_path, capsys):
    recipe = load_recipe("camgr")
    code = recipe.main(["--quick", "--quick-epochs", "1", "--only", "CAmgr", "MGCN", "alpha_1=0.01", "image", "k=5",
                        "--alphas", "0.01", "--ks", "5", "10",
                        "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    for title in ("Table 2", "Table 3", "Table 4", "Figure 2", "Figure 3", "Ladder MGCN -> CAmgr"):
        assert title in out
    folder = next(tmp_path.glob("synthetic-all-*"))
    text = (folder / "tables.txt").read_text()
    assert "0.1056" in text and "0.0640" in text  # the paper's Baby numbers beside ours
    assert "0.0964" in text  # MGCN's, measured beside them
    summaries = json.loads((folder / "summaries.json").read_text())
    mgcn = next(s for s in summaries["2"] if s["label"] == "MGCN")
    rung = next(s for s in summaries["ladder"] if s["label"] == "MGCN")  # a camgr config equal to mgcn
    assert mgcn["model"] == "mgcn" and rung["model"] == "camgr"
    assert mgcn["test"]["recall@20"]["mean"] == pytest.approx(rung["test"]["recall@20"]["mean"], abs=1e-6)
    assert (folder / "figure2_modalities.png").stat().st_size > 0
    assert (folder / "figure3_knn_k.png").stat().st_size > 0
def test_tmfun_recipe_quick_tables(tmp_path, capsys):
    recipe = load_recipe("tmfun")
    code = recipe.main(["--quick", "--quick-epochs", "3", "--only", "MF", "TMFUN-att",
                        "--fig2-values", "1e-3", "--cl-max-items", "256", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Table 1 - overall comparison" in out and "Table 2 - TMFUN variants" in out and "Figure 2" in out
    folder = next(tmp_path.glob("synthetic-all-MF-TMFUN-att-*"))
    text = (folder / "tables.txt").read_text()
    assert "0.0440" in text and "0.1022" in text and "compare orderings, not values" in text  # beside the paper's
    assert "alpha=0.001" in text
    assert (folder / "figure2.png").stat().st_size > 0


def test_every_recipe_states_its_expected_time(capsys):
    import re

    for name in ("camgr", "micro", "slifmr", "tmfun", "readings"):
        recipe = load_recipe(name)
        assert re.search(r"--quick[^.]*\d+ min", recipe.__doc__), name
        with pytest.raises(SystemExit):
            recipe.main(["--help"] + (["-m", "mgcn"] if name == "readings" else []))
        text = " ".join(capsys.readouterr().out.split())
        assert re.search(r"Expected time: .*--quick[^.]*\d+ min", text), (name, text[-300:])


def test_recipe_resume_keeps_finished_rows_and_refuses_other_options(tmp_path, capsys):
    recipe = load_recipe()
    folder = tmp_path / "table4"
    common = ["--quick", "--quick-epochs", "1", "--tables", "4", "--resume", str(folder)]
    assert recipe.main([*common, "--only", "MF"]) == 0
    mf_summary = folder / "runs" / "4-MF" / "summary.json"
    first = mf_summary.stat().st_mtime_ns
    capsys.readouterr()
    assert recipe.main([*common, "--only", "MF", "LightGCN"]) == 0  # MF kept, LightGCN trained into the folder
    assert mf_summary.stat().st_mtime_ns == first
    assert (folder / "runs" / "4-LightGCN" / "summary.json").exists()
    assert "MF" in (folder / "tables.txt").read_text() and "LightGCN" in (folder / "tables.txt").read_text()
    capsys.readouterr()
    # the same folder with another batch size: refused in one line naming the option, nothing overwritten
    code = recipe.main([*common, "--only", "MF", "--set", "train.batch_size=256"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "config.train.batch_size: 512 -> 256" in err and "4-MF" in err
    assert mf_summary.stat().st_mtime_ns == first
    # a row cut short (request written, no summary) runs again
    mf_summary.unlink()
    assert recipe.main([*common, "--only", "MF"]) == 0
    assert mf_summary.exists()


def test_recipe_bad_option_is_one_line(capsys, tmp_path):
    recipe = load_recipe()
    code = recipe.main(["--quick", "--tables", "4", "--only", "MF", "--set", "model.bogus=1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bogus" in err and "Traceback" not in err


def test_recipe_resume_with_a_longer_budget_continues_rows_exactly(tmp_path, capsys):
    """Raising the epoch cap on --resume continues each seed from its checkpoint: the row ends exactly as a
    row trained with the larger cap from the start."""
    recipe = load_recipe()
    extended, fresh = tmp_path / "extended", tmp_path / "fresh"
    assert recipe.main(["--quick", "--quick-epochs", "1", "--tables", "4", "--only", "MF",
                        "--resume", str(extended)]) == 0
    assert recipe.main(["--quick", "--quick-epochs", "3", "--tables", "4", "--only", "MF",
                        "--resume", str(extended)]) == 0
    assert recipe.main(["--quick", "--quick-epochs", "3", "--tables", "4", "--only", "MF",
                        "--resume", str(fresh)]) == 0
    capsys.readouterr()
    a, b = (json.loads((f / "runs" / "4-MF" / "summary.json").read_text()) for f in (extended, fresh))
    assert a["test"]["recall@20"]["mean"] == b["test"]["recall@20"]["mean"]
    assert a["best_epochs"] == b["best_epochs"]
    lines = (extended / "runs" / "4-MF" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_readings_recipe_runs_each_other_value_of_each_reading_against_the_defaults(tmp_path, capsys):
    recipe = load_recipe("readings")
    code = recipe.main(["-m", "freedom", "--quick", "--quick-epochs", "2", "--readings", "prune_schedule",
                        "--out", str(tmp_path)])
    assert code == 0
    text = (next(tmp_path.glob("synthetic-all-*")) / "tables.txt").read_text()
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("(the", "prune_schedule"))}
    assert set(lines) == {"(the", "prune_schedule=once", "prune_schedule=none"}  # the default "epoch" is the first row
    summaries = json.loads((next(tmp_path.glob("synthetic-all-*")) / "summaries.json").read_text())["readings"]
    default, once = summaries[0], summaries[1]
    assert [o for o in once["overrides"] if o.startswith("model.")] == ["model.prune_schedule=once"]
    assert not [o for o in default["overrides"] if o.startswith("model.")]
    assert lines["prune_schedule=once"].split()[1] == f"{once['test']['recall@20']['mean']:.4f}"
    assert " (p " in lines["prune_schedule=once"] and " (p " not in lines["(the"]


def test_reading_rows_leave_out_the_current_value_and_options_without_effect(capsys):
    from dglmm.errors import InputError
    from dglmm.recipe import reading_rows

    rows = dict(reading_rows("mgcn", "synthetic", [], []))
    assert rows["cl_items=all"] == ["model.cl_items=all"] and "cl_items=batch" not in rows
    assert rows["trainable_features=false"] == ["model.trainable_features=false"]
    assert len(rows) == 11  # ten reading options, one other value each, two for l2_on
    moved = dict(reading_rows("mgcn", "synthetic", [], ["model.cl_items=all"]))
    assert "cl_items=batch" in moved and "cl_items=all" not in moved
    assert "cl_distinct=true" not in moved  # cl_distinct has no effect over all items
    assert not [label for label in dict(reading_rows("lattice", "synthetic", [], [])) if label.startswith("cl_")]
    assert list(dict(reading_rows("mgcn", "synthetic", [], [], only=["knn_norm"]))) == ["knn_norm=rw"]
    with pytest.raises(InputError, match="--readings bogus: not a reading option of mgcn"):
        reading_rows("mgcn", "synthetic", [], [], only=["bogus"])


def test_every_reading_option_is_documented_on_its_models_page():
    from dglmm.config import section_classes
    from dglmm.models import REGISTRY
    from dglmm.options import readings_of

    pages = {"lattice": "micro"}
    for model, cls in REGISTRY.items():
        page = (ROOT / "docs" / "models" / f"{pages.get(model, model)}.md").read_text()
        for config in section_classes(cls.Config).values():
            for name, values in readings_of(config).items():
                assert len(values) >= 2, (model, name)
                assert f"`{name}`" in page, f"{model}.{name} is a reading option missing from its page"


def test_a_reading_option_needs_values_to_choose_from():
    from dglmm.options import option

    with pytest.raises(TypeError, match="a reading option needs choices"):
        option(0.5, "a number is not a reading", reading=True)
    assert option(True, "a bool is", reading=True).metadata["reading"]
