"""The command line as a user meets it: the run folder train prints works with every command, --resume reads
the run and refuses contradictions, epochs agree everywhere, help and options are complete."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

import dglmm
from dglmm.cli import build_parser, main
from tests.helpers import assert_one_line_error, run_cli

QUICK = ["--set", "train.epochs=2", "--set", "train.checkpoint_every=1"]


def train(capsys, out: Path, *args: str) -> tuple[Path, str, str]:
    """Train and return the folder printed on the first line of stdout, with stdout and stderr."""
    code, stdout, stderr = run_cli(capsys, "train", "--out", str(out), *args)
    assert code == 0, stderr
    first = stdout.splitlines()[0]
    assert first.startswith("run folder: "), stdout  # announced before training starts
    folder = Path(first.removeprefix("run folder: ").split(" (")[0])
    assert stdout.rstrip().endswith(f"run folder: {folder}")  # and again with the results
    return folder, stdout, stderr


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished 2-epoch runs on the synthetic data as `dglmm train` prints them: MF and LightGCN."""
    out = tmp_path_factory.mktemp("printed")
    folders = []
    for model in ("mf", "lightgcn"):
        before = set(out.iterdir())
        assert main(["train", "-m", model, "--out", str(out), *QUICK, "--set", "train.progress=false"]) == 0
        (folder,) = set(out.iterdir()) - before
        folders.append(folder)
    return folders


def test_printed_folder_is_accepted_by_every_command(two_runs, capsys, tmp_path, monkeypatch):
    mf, lightgcn = two_runs
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "evaluate", str(mf))
    assert code == 0 and re.search(r"recall@20\s+0\.\d{4}", out), err
    assert f"run: {mf / 'seed0'}" in out
    code, out, err = run_cli(capsys, "compare", str(mf), str(lightgcn), "--metrics", "recall@20")
    assert code == 0 and "recall@20" in out, err
    plot = mf.parent / f"compare-{mf.name}-vs-{lightgcn.name}.png"
    assert f"plot: {plot}" in out and plot.stat().st_size > 0
    assert not list(tmp_path.iterdir())  # nothing lands in the current directory
    code, out, err = run_cli(capsys, "train", "--resume", str(mf))
    assert code == 0, err
    assert f"resuming mf on synthetic in {mf / 'seed0'}" in out and "best epoch" in out and "{" not in out


def test_a_folder_with_several_seeds(tmp_path, capsys):
    folder, _, _ = train(capsys, tmp_path, "-m", "mf", "--seeds", "2", *QUICK, "--set", "train.progress=false")
    for command in (["evaluate", str(folder)], ["train", "--resume", str(folder)]):
        code, _, err = run_cli(capsys, *command)
        assert_one_line_error(code, err, "holds 2 seeds", "seed0, seed1", str(folder / "seed0"))
    code, out, err = run_cli(capsys, "evaluate", str(folder / "seed1"))
    assert code == 0 and "recall@20" in out, err
    code, out, err = run_cli(capsys, "compare", str(folder), str(folder), "--metrics", "recall@20",
                             "--plot", str(tmp_path / "same.png"))
    assert code == 0 and "p t(seeds)" in out, err  # both sides with their two seeds


def test_a_runs_config_file_trains_its_model_on_its_data_again(two_runs, tmp_path, capsys):
    mf = two_runs[0] / "seed0"
    recorded = yaml.safe_load((mf / "config.yaml").read_text())
    assert recorded["model_name"] == "mf" and recorded["dataset"] == "synthetic"
    folder, stdout, _ = train(capsys, tmp_path, "-c", mf / "config.yaml", "--set", "train.seed=2025")
    assert "(mf on synthetic, 1 seed(s))" in stdout
    again = yaml.safe_load((folder / "seed0" / "config.yaml").read_text())
    assert again["train"] == {**recorded["train"], "seed": 2025} and again["model"] == recorded["model"]
    code, _, err = run_cli(capsys, "train", "-m", "lightgcn", "-c", mf / "config.yaml", "--out", tmp_path)
    assert_one_line_error(code, err, str(mf / "config.yaml"), "for model 'mf', not 'lightgcn'", "leave -m out")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**recorded, "dataset": "/data/baby"}))
    code, _, err = run_cli(capsys, "train", "-m", "mf", "-c", other, "-d", "synthetic", "--out", tmp_path)
    assert_one_line_error(code, err, str(other), "for data set '/data/baby', not 'synthetic'")


def test_a_runs_config_file_on_a_file_dataset_trains_again(tmp_path, capsys):
    """A run on an MMRec/RecBole data set records its ``.inter`` file: its config file trains it again."""
    from dglmm.data.synthetic import make_synthetic

    data = write_mmrec(make_synthetic(), tmp_path / "mydata")
    first, _, _ = train(capsys, tmp_path / "runs", "-m", "mf", "-d", str(data), *QUICK,
                        "--set", "train.progress=false")
    recorded = yaml.safe_load((first / "seed0" / "config.yaml").read_text())["dataset"]
    assert recorded.endswith("mydata.inter")
    for n, named in enumerate(([], ["-d", str(data)], ["-d", recorded])):
        _, stdout, _ = train(capsys, tmp_path / f"again{n}", "-c", first / "seed0" / "config.yaml", *named)
        assert "(mf on mydata, 1 seed(s))" in stdout


def test_compare_plot_names_both_sides_and_has_a_legend(two_runs):
    from dglmm.compare import compare_runs, comparison_figure

    mf, lightgcn = two_runs
    figure = comparison_figure(compare_runs([mf, lightgcn], ["recall@20"]), 0.05, baseline=mf)
    (ax,) = figure.axes
    assert mf.name in ax.get_title() and lightgcn.name in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["significant (p < 0.05)", "not significant"]


# -- --resume: the run folder says what to resume; flags that contradict it are refused -------------------

@pytest.fixture
def stopped_run(tmp_path, capsys):
    """An MMRec-format run of MF stopped after 2 of 4 epochs (a file dataset, not the synthetic default)."""
    from dglmm.data.synthetic import make_synthetic

    data = write_mmrec(make_synthetic(), tmp_path / "mydata")
    folder, _, _ = train(capsys, tmp_path / "runs", "-m", "mf", "-d", str(data), *QUICK,
                         "--set", "train.progress=false")
    seed0 = folder / "seed0"
    config = yaml.safe_load((seed0 / "config.yaml").read_text())
    config["train"]["epochs"] = 4  # as if the run had been interrupted after its second epoch
    (seed0 / "config.yaml").write_text(yaml.safe_dump(config))
    return folder, data


def write_mmrec(dataset, folder: Path) -> Path:
    import numpy as np

    folder.mkdir()
    rows = [f"{u}\t{i}\t1\t0\t{label}" for label, split in enumerate(("train", "valid", "test"))
            for u, i in dataset.split(split)]
    (folder / "mydata.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n" + "\n".join(rows) + "\n")
    np.save(folder / "image_feat.npy", dataset.modalities["image"])
    return folder


@pytest.mark.parametrize("flags, fragment", [
    (["-m", "lightgcn"], "the run trains mf; -m lightgcn contradicts it"),
    (["-d", "synthetic"], "-d synthetic contradicts it"),
    (["--set", "train.lr=0.1"], "train.lr=0.1 contradicts it"),
    (["--set", "model.embedding_dim=8"], "model.embedding_dim=8 contradicts it"),
    (["--seeds", "3"], "--seeds does not apply"),
])
def test_resume_refuses_contradicting_flags(stopped_run, flags, fragment, capsys):
    folder, _ = stopped_run
    code, _, err = run_cli(capsys, "train", "--resume", str(folder), *flags)
    assert_one_line_error(code, err, f"--resume {folder / 'seed0'}", fragment)


def test_resume_refuses_a_contradicting_config_file(stopped_run, tmp_path, capsys):
    folder, _ = stopped_run
    (tmp_path / "other.yaml").write_text("train:\n  batch_size: 64\n")
    code, _, err = run_cli(capsys, "train", "--resume", str(folder), "-c", str(tmp_path / "other.yaml"))
    assert_one_line_error(code, err, "train.batch_size=64 contradicts it")


def test_resume_continues_the_recorded_model_on_the_recorded_data(stopped_run, capsys):
    folder, data = stopped_run
    seed0 = folder / "seed0"
    recorded_lr = yaml.safe_load((seed0 / "config.yaml").read_text())["train"]["lr"]
    code, out, err = run_cli(capsys, "train", "--resume", str(folder), "-m", "mf", "-d", str(data),
                             "--set", f"train.lr={recorded_lr}", "--set", "train.progress=true")
    assert code == 0, err
    assert f"resuming mf on mydata in {seed0}" in out
    assert [line.split()[1] for line in err.splitlines() if line.startswith("epoch ")] == ["3/4", "4/4"]
    results = json.loads((seed0 / "results.json").read_text())
    assert results["epochs_run"] == 4
    history = [json.loads(line) for line in (seed0 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]


def test_a_checkpoint_that_counted_epochs_from_0_resumes_renumbered(stopped_run, capsys):
    import torch

    folder, _ = stopped_run
    path = folder / "seed0" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["epoch_numbering"]  # as written before epochs were counted from 1
    state["history"] = [{**r, "epoch": r["epoch"] - 1} for r in state["history"]]
    state["best"]["epoch"] -= 1
    torch.save(state, path)
    code, _, err = run_cli(capsys, "train", "--resume", str(folder))
    assert code == 0, err
    history = [json.loads(line) for line in (folder / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    best = max(history, key=lambda r: r["valid"]["recall@20"])["epoch"]
    assert json.loads((folder / "seed0" / "results.json").read_text())["best_epoch"] == best


@pytest.mark.parametrize("stop, status", [("ctrl-c", 130), ("kill", 143)])
def test_interrupt_says_where_to_resume(tmp_path, capsys, monkeypatch, stop, status):
    import os
    import signal

    from dglmm.train.trainer import Trainer

    original = Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 2 and stop == "ctrl-c":
            raise KeyboardInterrupt
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # `kill PID`: the same as Ctrl-C, status 128 + 15
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    code, out, err = run_cli(capsys, "train", "-m", "mf", "--out", str(tmp_path), "--set", "train.epochs=4",
                             "--set", "train.checkpoint_every=5", "--set", "train.progress=false")
    folder = next(tmp_path.glob("mf_synthetic_*"))
    assert code == status and out.startswith(f"run folder: {folder}")
    assert err.strip().endswith(f"continue with: dglmm train --resume {folder / 'seed0'}")
    monkeypatch.setattr(Trainer, "train_epoch", original)
    code, _, err = run_cli(capsys, "train", "--resume", str(folder), "--set", "train.progress=true")
    assert code == 0 and [line.split()[1] for line in err.splitlines()] == ["3/4", "4/4"]


# -- epochs count from 1 on the console, in results.json, in the table and in curves.png ---------------------

def test_epoch_numbers_agree_everywhere(tmp_path, capsys):
    from dglmm.plots import training_curves_figure

    folder, out, err = train(capsys, tmp_path, "-m", "mf", "--set", "train.epochs=5",
                             "--set", "train.progress=true")
    console = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in console] == [f"{e}/5" for e in range(1, 6)]
    console_best = [int(line.split()[1].split("/")[0]) for line in console if line.split()[-3] == "*"][-1]
    results = json.loads((folder / "seed0" / "results.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    table_row = next(line for line in out.splitlines() if line.startswith("mf "))
    assert results["best_epoch"] == console_best == summary["best_epochs"][0]
    assert table_row.split()[5] == str(console_best)
    history = [json.loads(line) for line in (folder / "seed0" / "metrics.jsonl").read_text().splitlines()]
    figure = training_curves_figure(history)
    assert (folder / "seed0" / "curves.png").stat().st_size > 0
    *loss_axes, valid_ax = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in loss_axes] == ["training loss: bpr", "training loss: l2"]  # own scales
    assert list(valid_ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5]
    assert valid_ax.get_legend().get_texts()[0].get_text() == f"best epoch {console_best}"


def test_summary_table_says_what_its_numbers_are(tmp_path, capsys):
    _, out, _ = train(capsys, tmp_path, "-m", "mf", "--set", "train.epochs=1", "--set", "train.progress=false")
    assert "test metrics of the best validation epoch" in out and "selected: the grid point chosen" in out


# -- help, version, options -------------------------------------------------------------------------------

def test_version(capsys):
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert dglmm.__version__.split("+")[0] == pyproject["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"dglmm {dglmm.__version__}"


def test_version_of_a_checkout_never_installed(monkeypatch):
    import importlib
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    monkeypatch.setattr(metadata, "version", not_installed)
    try:
        assert importlib.reload(dglmm).__version__ == f"{pyproject['project']['version']}+source"
    finally:
        monkeypatch.undo()
        importlib.reload(dglmm)


def _parsers(parser: argparse.ArgumentParser, name: str = "dglmm"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_of_every_command_is_described_with_its_default():
    for name, parser in _parsers(build_parser()):
        help_text = " ".join(parser.format_help().split())
        assert "``" not in help_text, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.dest}: no help"
            if action.default not in (None, []) and action.nargs != 0:
                assert f"(default: {action.default}" in help_text, f"{name} {action.dest}: default not shown"
    train = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "(default: synthetic" in train and "(default: 1)" in train and "(default: runs)" in train


@pytest.mark.parametrize("command", ["train", "tune"])
def test_set_takes_several_overrides_at_once(command):
    args = build_parser().parse_args([command, "--set", "train.lr=1e-3", "model.n_layers=[1,2]",
                                      "--set", "train.seed=7"])
    assert args.set == ["train.lr=1e-3", "model.n_layers=[1,2]", "train.seed=7"]


def test_options_lists_every_option_of_every_section(capsys):
    import dataclasses

    from dglmm.config import section_classes
    from dglmm.models import REGISTRY

    for model, cls in sorted(REGISTRY.items()):
        code, out, _ = run_cli(capsys, "options", "-m", model)
        assert code == 0
        for section, config in section_classes(cls.Config).items():
            for field in dataclasses.fields(config):
                default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
                assert f"    {section}.{field.name} = {default!r} " in out, (model, section, field.name)
    code, out, _ = run_cli(capsys, "options", "train", "-d", "synthetic")
    assert "train.lr = 0.005" in out and "built-in 0.001" in out and "data." not in out


def test_model_descriptions_stand_alone(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "see the module" not in out and "``" not in out


def test_resume_may_raise_the_epoch_cap_and_patience_but_not_lower_them(stopped_run, capsys):
    folder, _ = stopped_run
    seed0 = folder / "seed0"
    code, _, err = run_cli(capsys, "train", "--resume", str(folder), "--set", "train.epochs=3")
    assert_one_line_error(code, err, "train.epochs=3 contradicts it", "may be raised")
    code, _, err = run_cli(capsys, "train", "--resume", str(folder), "--set", "train.epochs=6",
                           "--set", "train.patience=50")
    assert code == 0, err
    history = [json.loads(line) for line in (seed0 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    recorded = yaml.safe_load((seed0 / "config.yaml").read_text())["train"]
    assert recorded["epochs"] == 6 and recorded["patience"] == 50
