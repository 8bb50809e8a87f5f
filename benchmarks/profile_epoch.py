"""Where a model's training time goes: forward / backward / optimiser step, then by operator and by dglmm function.

    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py -m MODEL -d DATA [--set KEY=VALUE ...]
        [--batches N] [--top 12]

Builds ``MODEL`` as ``dglmm train -m MODEL -d DATA --set ...`` does (the packaged config layers plus ``--set``;
``-d baby-sized`` is the real Amazon Baby interactions with random stand-in 4,096-d image and 384-d text features,
as ``bench_mm_models.py`` uses), runs one untimed warm-up batch, then the first ``--batches`` BPR batches of an
epoch (default: the whole epoch, with the model's epoch hooks and phase batches such as KGAT's TransR phase) twice:

1. timed, no profiler: wall seconds of the forward (``training_forward`` + ``loss``), the optimiser step and the
   backward (the rest of each step: ``zero_grad`` + ``loss.backward()``), per batch and as shares of the steps;
2. under ``torch.profiler`` (CPU): self CPU time (time inside an operator, not in the operators it calls) of the
   top operators, and the same self time attributed to the innermost method of a dglmm class (the model's and its
   submodules', each wrapped in a ``record_function`` for this pass) that ran the operator; backward operators
   count for the method whose forward operator they differentiate (matched through the autograd sequence number),
   the optimiser's operators go to ``optimizer step``.  Shares are of the profiled pass's total self CPU time.  The profiler adds its own overhead, so its shares, not its seconds, are the figures to read.

Seconds depend on the machine and its load; shares and ratios taken in one process are what carry over.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from itertools import islice
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import baby_with_paper_features  # noqa: E402
from bench_kgat import Clock, timed_optimizer  # noqa: E402

from dglmm.data.readers import load_dataset  # noqa: E402
from dglmm.models.base import Batch  # noqa: E402
from dglmm.train.run import prepare_run, resolve_model_config  # noqa: E402


def build(model: str, data: str, overrides: list[str]):
    """The trainer ``dglmm train -m model -d data --set overrides`` would run (graph not cached for baby-sized)."""
    dataset = baby_with_paper_features() if data == "baby-sized" else load_dataset(data)
    config = resolve_model_config(model, dataset.name, [], ["train.progress=false", *overrides])
    prepared = prepare_run(model, dataset, config, graph_cache=False if data == "baby-sized" else None)
    prepared.model.load_pretrained()
    return prepared.trainer


def run_batches(trainer, n_batches: int | None, epoch: int) -> int:
    """The first ``n_batches`` steps of ``trainer.train_epoch(epoch)`` (all of it when None); returns the steps."""
    if n_batches is None:
        steps = len(trainer.sampler) + sum(len(s) for s in trainer.extra_samplers.values() if s.phase)
        trainer.train_epoch(epoch)
        return steps
    model, sums, counts = trainer.model, {}, {}
    model.train()
    model.on_epoch_start(epoch, trainer.graph)
    model.bind_graphs(trainer.device)
    per_batch = {n: s for n, s in trainer.extra_samplers.items() if not s.phase}
    for index, (users, pos, neg) in enumerate(islice(trainer.sampler, n_batches)):
        extras = {name: sampler.sample() for name, sampler in per_batch.items()}
        model.on_batch_start(index)
        trainer._step(Batch(users, pos, neg, extras).to(trainer.device), epoch, sums, counts)
    return n_batches


def clocked(trainer, clock: Clock) -> None:
    """Route forward, step and whole-step seconds of ``trainer`` to ``clock``."""
    model = trainer.model
    for name in ("training_forward", "loss"):
        method = getattr(model, name)
        setattr(model, name, lambda *a, _m=method, **k: _timed(clock, "forward", _m, *a, **k))
    timed_optimizer(trainer.optimizer, clock, "optimizer step")
    for optimizer in trainer.phase_optimizers.values():
        timed_optimizer(optimizer, clock, "optimizer step")
    step = trainer._step
    trainer._step = lambda *a, **k: _timed(clock, "whole steps", step, *a, **k)


def _timed(clock: Clock, label: str, fn, *args, **kwargs):
    with clock(label):
        return fn(*args, **kwargs)


LABEL = "dglmm "  # prefix of the record_function labels put around the model's methods


def labelled(model: torch.nn.Module) -> None:
    """Wrap every method that a dglmm class of ``model`` or of its submodules defines (on the instance) in a
    ``record_function`` labelled ``dglmm Class.method``, so that the profiler knows which function ran an op."""
    for module in model.modules():
        for cls in type(module).__mro__:
            if not cls.__module__.startswith("dglmm"):
                continue
            for name, attr in vars(cls).items():
                if callable(attr) and not name.startswith("__") and not isinstance(attr, type) \
                        and not isinstance(vars(module).get(name), _Labelled):
                    object.__setattr__(module, name, _Labelled(f"{LABEL}{cls.__name__}.{name}",
                                                               getattr(module, name)))


class _Labelled:
    def __init__(self, label: str, method) -> None:
        self.label, self.method = label, method

    def __call__(self, *args, **kwargs):
        with record_function(self.label):
            return self.method(*args, **kwargs)


def site(event) -> str | None:
    """The innermost ``dglmm Class.method`` label around a profiler event."""
    while event is not None:
        if event.name.startswith(LABEL):
            return event.name[len(LABEL):]
        event = event.cpu_parent
    return None


def attribute(events) -> dict[str, float]:
    """Self CPU microseconds per dglmm method (see the module docstring)."""
    forward_site: dict[int, str] = {}
    for event in events:
        label = site(event)
        if event.sequence_nr >= 0 and label and not event.name.startswith("autograd::"):
            forward_site.setdefault(event.sequence_nr, label)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        label, parent = None, event
        while parent is not None and label is None:
            if parent.name.startswith("Optimizer.step"):
                label = "optimizer step"
            elif parent.name.startswith("autograd::engine::evaluate_function"):
                label = forward_site.get(parent.sequence_nr, "(backward, outside dglmm methods)")
            parent = parent.cpu_parent
        label = label or site(event) or "(outside dglmm methods)"
        if not event.name.startswith(LABEL):
            totals[label] += event.self_cpu_time_total
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-d", "--dataset", required=True, help="a known dataset name, a path, or baby-sized")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="option overrides")
    parser.add_argument("--batches", type=int, default=None, help="BPR batches to profile (default: one epoch)")
    parser.add_argument("--top", type=int, default=12, help="rows of the operator and function tables")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model} on {args.dataset}"
          + "".join(f" --set {s}" for s in args.set), flush=True)
    trainer = build(args.model, args.dataset, args.set)
    run_batches(trainer, 1, 0)  # warm-up: graph views, CSR matrices, allocator
    clock = Clock()
    clocked(trainer, clock)
    steps = run_batches(trainer, args.batches, 1)
    s = clock.seconds
    backward = s["whole steps"] - s["forward"] - s["optimizer step"]
    print(f"\n{steps} steps ({len(trainer.sampler)} BPR batches per epoch), seconds per step (wall, no profiler):")
    for label, value in (("forward", s["forward"]), ("backward", backward), ("optimizer step", s["optimizer step"])):
        print(f"  {label:16s} {value / steps:8.3f} s  {100 * value / s['whole steps']:5.1f}%")
    print(f"  {'whole step':16s} {s['whole steps'] / steps:8.3f} s")

    labelled(trainer.model)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_batches(trainer, args.batches, 2)
    events = prof.events()
    total = sum(e.self_cpu_time_total for e in events if not e.name.startswith(LABEL))
    print(f"\ntop operators by self CPU time (profiled pass, {total / 1e6:.1f} s with profiler overhead):")
    rows = [r for r in prof.key_averages() if not r.key.startswith(LABEL)]
    for row in sorted(rows, key=lambda r: -r.self_cpu_time_total)[:args.top]:
        print(f"  {100 * row.self_cpu_time_total / total:5.1f}%  {row.key}  ({row.count} calls)")
    print("\nself CPU time by dglmm method (innermost; backward counted with its forward):")
    for label, value in sorted(attribute(events).items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {100 * value / total:5.1f}%  {label}")


if __name__ == "__main__":
    main()
