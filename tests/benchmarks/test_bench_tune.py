"""benchmarks/bench_tune.py runs: its stub worker loop spends the budget, and a real trial checkpoints as a
worker's does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.helpers import tiny_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tune.py"
spec = importlib.util.spec_from_file_location("bench_tune", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench
spec.loader.exec_module(bench)


def test_the_stub_loop_times_every_trial_of_the_budget():
    times = bench.machinery_seconds(trials=3, epochs=4)
    assert len(times) == 4 and all(t > 0 for t in times)


def test_a_timed_trial_with_a_folder_leaves_its_checkpoint(tmp_path):
    dataset = tiny_dataset(40, 30, 400, seed=1)
    seconds, size = bench.trial_seconds("mf", dataset, 2, tmp_path / "0")
    assert seconds > 0 and size == (tmp_path / "0" / "checkpoint.pt").stat().st_size > 0
    assert bench.trial_seconds("mf", dataset, 2, None)[1] == 0
