"""The command line: readable output, and one-line errors (no traceback) for every bad input."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dglmm.cli import main
from tests.helpers import assert_one_line_error, run_cli


def replace(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


BAD_INPUTS = {
    "missing file": (lambda d: (d / "toy.inter").unlink(), ["no known dataset layout"]),
    "wrong columns": (lambda d: replace(d / "toy.inter", "x_label", "split"), ["toy.inter", "x_label"]),
    "negative id": (lambda d: replace(d / "toy.inter", "2\t4\t1\t1\t1", "2\t-4\t1\t1\t1"),
                    ["toy.inter", "negative"]),
    "non-integer id": (lambda d: replace(d / "toy.inter", "2\t4\t1\t1\t1", "2\tx4\t1\t1\t1"),
                       ["toy.inter", "itemID"]),
    "feature rows": (lambda d: np.save(d / "image_feat.npy", np.ones((3, 4), np.float32)),
                     ["image_feat.npy", "rows"]),
    "nan feature": (lambda d: np.save(d / "image_feat.npy", np.full((6, 4), np.nan, np.float32)),
                    ["image_feat.npy", "NaN"]),
    "empty test split": (lambda d: replace(d / "toy.inter", "\t2\n", "\t0\n"), ["test"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_mmrec_inputs_give_one_line_errors(case, mmrec_dir, capsys):
    break_it, fragments = BAD_INPUTS[case]
    break_it(mmrec_dir)
    code, _, err = run_cli(capsys, "data", "info", str(mmrec_dir))
    assert_one_line_error(code, err, *fragments)


def test_ids_out_of_range_for_the_id_map(lattice_dir, capsys):
    (lattice_dir / "test.json").write_text('{"0": [3], "1": [99]}')
    (lattice_dir / "item2id.json").write_text('{"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}')
    code, _, err = run_cli(capsys, "data", "info", str(lattice_dir))
    assert_one_line_error(code, err, "test.json")


def test_kg_with_unknown_item_link(recbole_dir, capsys):
    replace(recbole_dir / "tiny.link", "20\tm.b", "99\tm.b")
    code, _, err = run_cli(capsys, "data", "info", str(recbole_dir))
    assert_one_line_error(code, err, "tiny.link")


def test_duplicates_are_dropped_with_a_warning(mmrec_dir, capsys):
    with open(mmrec_dir / "toy.inter", "a") as fh:
        fh.write("0\t0\t5\t1\t0\n")
    with pytest.warns(UserWarning, match="duplicate"):
        code, out, _ = run_cli(capsys, "data", "info", str(mmrec_dir))
    assert code == 0 and "interactions" in out


def test_unknown_option_and_model(capsys):
    code, _, err = run_cli(capsys, "train", "-m", "lightgcn", "-d", "synthetic", "--set", "model.nope=1")
    assert_one_line_error(code, err, "nope")
    code, _, err = run_cli(capsys, "models", "nomodel")
    assert_one_line_error(code, err, "unknown model")


def test_data_info_graph_and_models(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DGLMM_CACHE", str(tmp_path))
    code, out, _ = run_cli(capsys, "data", "info", "synthetic")
    assert code == 0 and "users          1,000" in out and "image (64-d)" in out
    code, out, _ = run_cli(capsys, "data", "graph", "synthetic", "--k", "5")
    assert code == 0 and "similar_image" in out and "interacted_by" in out
    code, out, _ = run_cli(capsys, "models", "micro")
    assert code == 0 and "model.variant" in out and "model.lambda_coeff" in out


def test_train_and_evaluate_round_trip(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DGLMM_CACHE", str(tmp_path / "cache"))
    code, out, _ = run_cli(capsys, "train", "-m", "mf", "-d", "synthetic", "--out", str(tmp_path),
                           "--set", "train.epochs=3", "--set", "train.progress=false")
    assert code == 0 and "recall@20" in out
    run_dir = next(tmp_path.glob("mf_synthetic_*")) / "seed0"
    code, out, _ = run_cli(capsys, "evaluate", str(run_dir))
    assert code == 0 and "recall@20" in out
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "nothing", "not found")


def test_console_script_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dglmm.cli", "data", "info", str(tmp_path / "absent")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_output_into_a_closed_pipe_is_not_an_error():
    """``dglmm ... | head``: the reader is gone before the output is written; exit quietly, status 0."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "dglmm", "models", "-v"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# -- ids far beyond the rows of a file: refused before anything of size max id is allocated -----------------

HUGE = 10**12

HUGE_IDS = {
    "mmrec user": ("mmrec_dir", lambda d: replace(d / "toy.inter", "2\t4\t1\t1\t1", f"{HUGE}\t4\t1\t1\t1"),
                   ["toy.inter", "line 10", f"userID {HUGE}", "renumber"]),
    "mmrec item": ("mmrec_dir", lambda d: replace(d / "toy.inter", "2\t4\t1\t1\t1", f"2\t{HUGE}\t1\t1\t1"),
                   ["toy.inter", f"itemID {HUGE}"]),
    "lattice user": ("lattice_dir", lambda d: replace(d / "test.json", '"1": [3]', f'"{HUGE}": [3]'),
                     ["test.json", f"user id {HUGE}"]),
    "lattice item": ("lattice_dir", lambda d: replace(d / "val.json", '"2": [4]', f'"2": [{HUGE}]'),
                     ["val.json", f"item id {HUGE}"]),
    "kgat user": ("kgat_dir", lambda d: replace(d / "test.txt", "1 3", f"{HUGE} 3"), ["test.txt", "user id"]),
    "kgat entity": ("kgat_dir", lambda d: replace(d / "kg_final.txt", "6 2 7", f"6 2 {HUGE}"),
                    ["kg_final.txt", f"entity id {HUGE}"]),
}


@pytest.mark.parametrize("case", list(HUGE_IDS))
def test_ids_far_beyond_the_rows_give_one_line_errors(case, request, capsys):
    fixture, break_it, fragments = HUGE_IDS[case]
    directory = request.getfixturevalue(fixture)
    break_it(directory)
    code, _, err = run_cli(capsys, "data", "info", str(directory))
    assert_one_line_error(code, err, *fragments)


def test_sparse_but_plausible_ids_are_accepted(mmrec_dir, capsys):
    replace(mmrec_dir / "toy.inter", "2\t4\t1\t1\t1", "5000\t4\t1\t1\t1")  # 9 rows: bound 9 * 10 + 100000
    code, out, _ = run_cli(capsys, "data", "info", str(mmrec_dir))
    assert code == 0 and "5,001" in out


# -- option values: one line naming the option, before any training -------------------------------------------

BAD_SETS = {
    ("mf", "train.lr=abc"): "train.lr must be a number, got 'abc'",
    ("mf", "train.lr=0"): "train.lr must be > 0; got 0.0",
    ("lightgcn", "model.n_layers=-1"): "model.n_layers must be >= 0; got -1",
    ("mf", "train.patience=-1"): "train.patience must be >= 0; got -1",
    ("mf", "graph.knn_k=0"): "graph.knn_k must be >= 1; got 0",
    ("mf", "model.reg_weight=-1"): "model.reg_weight must be >= 0; got -1.0",
    ("ngcf", "model.layer_combination=sum"): "model.layer_combination must be one of concat, mean; got 'sum'",
    ("lightgcn", "model.adjacency=symm"): "model.adjacency must be one of sym, rw_self_loops; got 'symm'",
    ("mf", "train.metric=recall@30"): "train.metric must be one of",
    ("mf", "train.lr"): "--set expects key=value",
    ("mf", "nosection.x=1"): "unknown config section 'nosection'",
}


@pytest.mark.parametrize("model,override", list(BAD_SETS))
def test_bad_set_values_give_one_line_naming_the_option(model, override, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "-m", model, "-d", "synthetic", "--out", str(tmp_path),
                           "--set", override)
    assert_one_line_error(code, err, BAD_SETS[(model, override)])
    assert not list(tmp_path.iterdir())  # nothing was trained


def test_data_graph_k_is_checked(capsys):
    code, _, err = run_cli(capsys, "data", "graph", "synthetic", "--k", "0", "--no-cache")
    assert_one_line_error(code, err, "graph.knn_k must be >= 1")


# -- checkpoints: corrupt, truncated or crafted files are refused in one line ---------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished 2-epoch MF run folder (copied by each test that damages it)."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "-m", "mf", "-d", "synthetic", "--out", str(out), "--set", "train.epochs=2",
                 "--set", "train.checkpoint_every=1", "--set", "train.progress=false"])
    assert code == 0
    return next(out.glob("mf_synthetic_*")) / "seed0"


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


class Payload:
    """Unpickling this object creates ``marker`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(b"this is not a checkpoint\n" * 10),
    "empty": lambda p: p.write_bytes(b""),
    "not a dict": lambda p: torch.save([1, 2, 3], p),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_to_resume_gives_one_line(damage, run_copy, capsys):
    DAMAGE[damage](run_copy / "checkpoint.pt")
    code, _, err = run_cli(capsys, "train", "-m", "mf", "--resume", str(run_copy))
    assert_one_line_error(code, err, str(run_copy / "checkpoint.pt"))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_best_pt_to_evaluate_gives_one_line(damage, run_copy, capsys):
    DAMAGE[damage](run_copy / "best.pt")
    code, _, err = run_cli(capsys, "evaluate", str(run_copy))
    assert_one_line_error(code, err, str(run_copy / "best.pt"))


def test_checkpoint_of_another_model_gives_one_line(run_copy, capsys):
    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    state["model"] = {"something.else": torch.zeros(2)}
    torch.save(state, run_copy / "checkpoint.pt")
    code, _, err = run_cli(capsys, "train", "-m", "mf", "--resume", str(run_copy))
    assert_one_line_error(code, err, "checkpoint.pt", "does not fit")


@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt"])
def test_crafted_pickle_is_refused_and_runs_nothing(name, run_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, run_copy / name)
    # the payload works: an unrestricted torch.load would run it
    torch.load(run_copy / name, weights_only=False)
    assert marker.exists()
    marker.unlink()
    if name == "checkpoint.pt":
        code, _, err = run_cli(capsys, "train", "-m", "mf", "--resume", str(run_copy))
    else:
        code, _, err = run_cli(capsys, "evaluate", str(run_copy))
    assert_one_line_error(code, err, str(run_copy / name), "refused")
    assert not marker.exists()


def test_load_checkpoint_is_the_only_torch_load():
    root = Path(__file__).resolve().parents[2] / "dglmm"
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "torch.load(" in p.read_text())
    assert users == ["io.py"]


def test_resume_restores_our_own_checkpoint_with_weights_only(run_copy):
    from dglmm.io import load_checkpoint

    state = load_checkpoint(run_copy / "checkpoint.pt")
    assert state["epoch"] == 1 and isinstance(state["numpy_rng"]["keys"], torch.Tensor)


# -- internal errors are not input errors ---------------------------------------------------------------------

def test_internal_error_says_so_in_one_line_and_debug_shows_it(capsys, monkeypatch):
    import dglmm.data.dataset

    def broken(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(dglmm.data.dataset.Dataset, "summary", broken)
    code, _, err = run_cli(capsys, "data", "info", "synthetic")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0] == ("dglmm: internal error: ZeroDivisionError: a bug "
                        "(run again with --debug for the traceback)")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "data", "info", "synthetic"])


def test_input_errors_share_one_base_class():
    from dglmm.data.errors import DataError
    from dglmm.errors import CheckpointError, InputError
    from dglmm.options import OptionError

    assert all(issubclass(cls, InputError) for cls in (DataError, OptionError, CheckpointError))


# -- output for people and for logs ---------------------------------------------------------------------------

def test_training_output_is_one_line_per_epoch_when_not_a_terminal(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "-m", "mf", "-d", "synthetic", "--out", str(tmp_path),
                             "--set", "train.epochs=3", "--set", "train.eval_every=2")
    assert code == 0 and "\r" not in err and "\r" not in out
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert [line.split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert all(" bpr " in line and line.endswith(" s") for line in lines)
    assert "valid recall@20" not in lines[0] and "valid recall@20" in lines[1] and lines[1].count("*") == 1


def test_progress_false_is_silent(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "-m", "mf", "-d", "synthetic", "--out", str(tmp_path),
                           "--set", "train.epochs=2", "--set", "train.progress=false")
    assert code == 0 and not [line for line in err.splitlines() if not line.startswith("warning:")]


def test_demo_says_what_it_trains_and_shows_epochs(capsys):
    code, out, err = run_cli(capsys, "demo", "--models", "mf", "lightgcn", "--epochs", "2")
    assert code == 0
    assert "[1/2] training mf" in out and "[2/2] training lightgcn" in out
    assert len([line for line in err.splitlines() if line.startswith("epoch ")]) == 4
    assert "\r" not in err


def test_resume_without_checkpoint_gives_one_line(run_copy, capsys):
    (run_copy / "checkpoint.pt").unlink()
    code, _, err = run_cli(capsys, "train", "-m", "mf", "--resume", str(run_copy))
    assert_one_line_error(code, err, str(run_copy / "checkpoint.pt"), "nothing to resume")
