"""benchmarks/profile_epoch.py: self time goes to the method that ran an operator, backward to its forward's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_epoch.py"
sys.path.insert(0, str(SCRIPT.parent))
spec = importlib.util.spec_from_file_location("profile_epoch", SCRIPT)
pe = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pe
spec.loader.exec_module(pe)


def test_backward_time_counts_for_the_forward_method():
    torch.manual_seed(0)
    x = torch.randn(400, 400, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(f"{pe.LABEL}Big.matmul"):
            big = (x @ x).sum()
        with record_function(f"{pe.LABEL}Small.scale"):
            small = (2 * x).sum()
        (big + small).backward()
    events = prof.events()
    totals = pe.attribute(events)
    assert sum(totals.values()) == sum(e.self_cpu_time_total for e in events if not e.name.startswith(pe.LABEL))
    backward_mm = [e for e in events if e.name == "aten::mm" and not pe.site(e)]
    assert len(backward_mm) == 2                                   # MmBackward0's two products, outside labels
    assert totals["Big.matmul"] > sum(e.self_cpu_time_total for e in backward_mm)   # ... counted for Big.matmul
    assert totals["Big.matmul"] > 3 * totals["Small.scale"]


def test_one_profiled_run_of_a_model():
    trainer = pe.build("mf", "synthetic", ["train.batch_size=256"])
    clock = pe.Clock()
    pe.clocked(trainer, clock)
    assert pe.run_batches(trainer, 2, 1) == 2
    assert 0 < clock.seconds["forward"] + clock.seconds["optimizer step"] < clock.seconds["whole steps"]
    pe.labelled(trainer.model)
    assert isinstance(vars(trainer.model)["batch_rows"], pe._Labelled)
    pe.labelled(trainer.model)                                     # wrapping twice keeps one label
    assert not isinstance(vars(trainer.model)["batch_rows"].method, pe._Labelled)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pe.run_batches(trainer, 2, 2)
    totals = pe.attribute(prof.events())
    assert totals["optimizer step"] > 0 and totals["Recommender.batch_rows"] > 0
