"""The one notion of a run folder: a seed's folder, the folder ``dglmm train`` prints, a grid's folder."""

from __future__ import annotations

import json
import re

import pytest

from dglmm.errors import InputError
from dglmm.io import resolve_run_dir, seed_run_dirs


def _run(path, seeds=(0,)):
    for seed in seeds:
        (path / f"seed{seed}").mkdir(parents=True)
        (path / f"seed{seed}" / "config.yaml").write_text("model_name: mf\n")
    return path


def test_a_seed_folder_is_itself(tmp_path):
    run = _run(tmp_path / "mf_x") / "seed0"
    assert seed_run_dirs(run) == [run]
    assert resolve_run_dir(run) == run


def test_the_printed_folder_resolves_to_its_only_seed(tmp_path):
    run = _run(tmp_path / "mf_x")
    assert resolve_run_dir(run) == run / "seed0"


def test_seeds_in_numeric_order_and_several_seeds_name_them(tmp_path):
    run = _run(tmp_path / "mf_x", seeds=(0, 10, 2, 1))
    assert [p.name for p in seed_run_dirs(run)] == ["seed0", "seed1", "seed2", "seed10"]
    with pytest.raises(InputError, match=r"holds 4 seeds \(seed0, seed1, seed2, seed10\); name one"):
        resolve_run_dir(run)


def test_a_grid_folder_stands_for_its_selected_point(tmp_path):
    grid = tmp_path / "grid"
    _run(grid / "point0")
    _run(grid / "point1", seeds=(0, 1))
    with pytest.raises(InputError, match="no summary.json"):
        seed_run_dirs(grid)
    (grid / "summary.json").write_text(json.dumps({"selected": {"train.lr": 2}, "grid": [
        {"point": {"train.lr": 1}}, {"point": {"train.lr": 2}}]}))
    assert seed_run_dirs(grid) == [grid / "point1" / "seed0", grid / "point1" / "seed1"]
    (grid / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="not a dglmm grid summary"):
        seed_run_dirs(grid)


@pytest.mark.parametrize("make", [lambda p: p, lambda p: (p.mkdir(), p)[1],
                                  lambda p: (p.mkdir(), (p / "seedx").mkdir(), p)[2]])
def test_anything_else_is_one_error_naming_the_path(make, tmp_path):
    path = make(tmp_path / "nothing")
    with pytest.raises(InputError, match=re.escape(str(path))):
        seed_run_dirs(path)
