"""Where one KGAT epoch's time goes, phase by phase, and the TransR projection before/after as a ratio.

    OMP_NUM_THREADS=1 python benchmarks/bench_kgat.py [-d book-crossing] [--epochs 1] [--set model.x=y ...]

Builds ``kgat`` as ``dglmm train -m kgat`` does (packaged config layers plus ``--set``), then times ``--epochs``
epochs after a few untimed warm-up steps, split into the phases of the official algorithm: the CF BPR batches
(forward with full propagation, backward, Adam), the TransR KG batches, the attention update (``on_epoch_end``)
and one full-ranking evaluation on validation; the Adam steps inside each phase are timed apart.  Then the same
epochs with the TransR projections through ``dgl.ops.gather_mm`` (the code before ``gather_project``: on CPU its
``segment_mm`` backward fills and adds a whole ``[R, d, d_r]`` zero tensor per relation block), and prints
before / after seconds per epoch as a ratio measured in the same process, and MF's epoch on the same data as
the scale.  Also checks that both projections give the same TransR losses, batch by batch.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from contextlib import contextmanager

import dgl
import torch

import dglmm.models.kgat as kgat_module
from dglmm.data.readers import load_dataset
from dglmm.models.base import Batch
from dglmm.train.run import prepare_run, resolve_model_config


class Clock:
    """Accumulated seconds per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, label: str):
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - tic


def timed_optimizer(optimizer: torch.optim.Optimizer, clock: Clock, label: str) -> None:
    """Wrap ``optimizer.step`` so that its seconds go to ``label``."""
    step = optimizer.step

    def wrapped(*args, **kwargs):
        with clock(label):
            return step(*args, **kwargs)
    optimizer.step = wrapped


def epoch_phases(trainer, epoch: int, clock: Clock) -> list[float]:
    """One epoch as ``Trainer.train_epoch`` runs it, each phase timed; returns the TransR loss of each batch."""
    model = trainer.model
    model.train()
    model.on_epoch_start(epoch, trainer.graph)
    sums, counts = {}, {}
    with clock("cf phase"):
        for users, pos, neg in trainer.sampler:
            trainer._step(Batch(users, pos, neg, {}), epoch, sums, counts)
    empty = torch.zeros(0, dtype=torch.long)
    losses = []
    with clock("transr phase"):
        for name, sampler in trainer.extra_samplers.items():
            optimizer = trainer.phase_optimizers.get(name, trainer.optimizer)
            for sample in sampler:
                before = sums.get("transr", 0.0)
                trainer._step(Batch(empty, empty, empty, {name: sample}), epoch, sums, counts, optimizer)
                losses.append(sums["transr"] - before)
    with clock("attention update"):
        model.on_epoch_end(epoch, trainer.graph)
    with clock("evaluation (valid)"):
        trainer.evaluate("valid")
    return losses


def warm_up(trainer, steps: int = 2) -> None:
    """A few CF and TransR steps (graph views, CSR matrices and pair plans built, allocator warm), untimed."""
    sums, counts = {}, {}
    for _, (users, pos, neg) in zip(range(steps), trainer.sampler, strict=False):
        trainer._step(Batch(users, pos, neg, {}), 0, sums, counts)
    empty = torch.zeros(0, dtype=torch.long)
    for name, sampler in trainer.extra_samplers.items():
        for _, sample in zip(range(steps), sampler, strict=False):
            trainer._step(Batch(empty, empty, empty, {name: sample}), 0, sums, counts,
                          trainer.phase_optimizers.get(name, trainer.optimizer))


def run(dataset, overrides: list[str], epochs: int, seed: int) -> tuple[Clock, list[float]]:
    """A fresh model (seed ``seed``): a short untimed warm-up, then ``epochs`` timed epochs."""
    config = resolve_model_config("kgat", dataset.name, [], ["train.progress=false", f"train.seed={seed}",
                                                              *overrides])
    trainer = prepare_run("kgat", dataset, config).trainer
    clock = Clock()
    timed_optimizer(trainer.optimizer, clock, "cf adam")
    for optimizer in trainer.phase_optimizers.values():
        timed_optimizer(optimizer, clock, "transr adam")
    warm_up(trainer)
    losses = []
    for epoch in range(1, epochs + 1):
        losses += epoch_phases(trainer, epoch, clock)
    return clock, losses


def mf_epoch(dataset) -> float:
    config = resolve_model_config("mf", dataset.name, [], ["train.progress=false"])
    trainer = prepare_run("mf", dataset, config).trainer
    trainer.train_epoch(0)
    tic = time.perf_counter()
    trainer.train_epoch(1)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-d", "--dataset", default="book-crossing", help="a known dataset name or a path")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per variant")
    parser.add_argument("--set", action="append", default=[], help="KGAT option overrides, e.g. model.x=y")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, dgl {dgl.__version__}, {torch.get_num_threads()} thread(s)")
    dataset = load_dataset(args.dataset)
    print(f"data: {dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {len(dataset.train)} training "
          f"interactions, {len(dataset.kg)} KG triples", flush=True)
    after, losses_after = run(dataset, args.set, args.epochs, args.seed)
    fast = kgat_module.gather_project
    kgat_module.gather_project = lambda x, w, r: dgl.ops.gather_mm(x, w, idx_b=r)
    try:
        before, losses_before = run(dataset, args.set, args.epochs, args.seed)
    finally:
        kgat_module.gather_project = fast
    mf = mf_epoch(dataset)
    n = args.epochs
    phases = ["cf phase", "transr phase", "attention update", "evaluation (valid)"]
    total = {name: sum(c.seconds[p] for p in phases) / n for name, c in (("before", before), ("after", after))}
    print(f"\nseconds per epoch (mean of {n}), gather_mm projection (before) and gather_project (after):")
    print(f"{'phase':24s} {'before':>9s} {'after':>9s} {'share after':>12s}")
    for label in [*phases, "cf adam", "transr adam"]:
        b, a = before.seconds[label] / n, after.seconds[label] / n
        share = f"{100 * a / total['after']:11.1f}%"
        print(f"{('  of which ' if 'adam' in label else '') + label:24s} {b:9.2f} {a:9.2f} {share:>12s}")
    print(f"{'epoch total':24s} {total['before']:9.2f} {total['after']:9.2f}")
    print(f"before / after: {total['before'] / total['after']:.2f}x; TransR phase "
          f"{before.seconds['transr phase'] / max(after.seconds['transr phase'], 1e-9):.2f}x")
    same = len(losses_before) == len(losses_after) and all(
        a == b for a, b in zip(losses_before, losses_after, strict=True))
    print(f"TransR batch losses identical before/after: {same} ({len(losses_after)} batches)")
    print(f"MF epoch on the same data: {mf:.2f} s; KGAT epoch (training phases) / MF: "
          f"{(after.seconds['cf phase'] + after.seconds['transr phase']) / n / mf:.0f}x")


if __name__ == "__main__":
    main()
