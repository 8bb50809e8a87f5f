"""Hostile inputs that once ran for minutes or ended in an internal error: each is one line, exit 2."""

from __future__ import annotations

import pytest

from dglmm.cli import main
from tests.helpers import cli_one_line_error


@pytest.mark.parametrize("model,setting", [("lattice", "model.knn_k=100000000"), ("camgr", "model.knn_k=5000"),
                                           ("slifmr", "model.sge_top_n=5000"), ("mf", "graph.knn_k=5000"),
                                           ("ngcf", "model.n_layers=1000000000"),
                                           ("kgat", "model.relation_dim=1000000000"),
                                           ("kgat", "model.kg_batch_size=1000000000"),
                                           ("slifmr", "model.cl_negatives=1000000000")])
def test_sizes_beyond_the_data_or_memory_are_refused_at_once(model, setting, capsys, tmp_path):
    line = cli_one_line_error(capsys, "train", "-m", model, "-d", "synthetic", "--out", str(tmp_path),
                              "--set", setting)
    assert setting.split("=")[0] in line
    assert not list(tmp_path.iterdir())


def test_out_under_an_existing_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = cli_one_line_error(capsys, "train", "-m", "mf", "-d", "synthetic", "--out", str(blocker / "runs"),
                              "--set", "train.epochs=1")
    assert f"{blocker} is a file, not a folder" in line


def test_evaluate_a_run_on_data_of_other_sizes(capsys, tmp_path, mmrec_dir):
    assert main(["train", "-m", "mf", "-d", "synthetic", "--out", str(tmp_path), "--set", "train.epochs=1",
                 "--set", "train.progress=false"]) == 0
    capsys.readouterr()
    run = next(tmp_path.glob("mf_synthetic_*"))
    line = cli_one_line_error(capsys, "evaluate", str(run / "seed0"), "-d", str(mmrec_dir))
    assert "best.pt" in line and "other sizes" in line
