"""The command line: readable output, and one-line errors (no traceback) for every bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dglmm.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dglmm: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


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
    assert_one_line_error(code, err, "config.yaml")


def test_console_script_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dglmm.cli", "data", "info", str(tmp_path / "absent")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
