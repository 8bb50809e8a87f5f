"""The tuning machinery's own cost per trial, as a share of a real trial.

Part 1 runs ``dglmm tune``'s worker loop (journal storage in a temporary folder, seeded TPE, median pruner,
LightGCN's search space, ``trials.csv``/``config.yaml`` rewritten after every trial) with the training replaced
by a stub that reports ``--epochs`` validation values, so what is timed is only the machinery: stale-trial
check, ask, define-by-run sampling, per-epoch report and pruning decision, heartbeat, tell and bookkeeping.
Part 2 times one real trial of ``--model`` (LightGCN by default) on ``--data`` (train + per-epoch validation,
the same epoch count, no early stop) twice: without a folder, and as a worker runs it, checkpointing every
epoch into its trial folder (what lets an interrupted trial resume); it prints both ratios.  Everything runs
in this one process, one after the other.

    OMP_NUM_THREADS=1 python benchmarks/bench_tune.py [--data ../shared/data/tiktok] [--model lightgcn]
        [--trials 24] [--epochs 25]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import dglmm.train.run as run
from dglmm.config import TrainConfig
from dglmm.tune.study import TuneSettings, Worker, open_storage, open_study, plan_study


class _StubTrainer:
    """Reports a plausible learning curve for ``epochs`` epochs through ``on_validation``; trains nothing."""

    def __init__(self, epochs: int, seed: int) -> None:
        self.epochs, self.rng = epochs, np.random.default_rng(seed)
        self.config = TrainConfig()
        self.on_validation = None
        self.history: list[dict] = []
        self.best = {"epoch": -1, "score": -math.inf, "valid": {}}

    def fit_validation(self) -> dict:
        level = self.rng.uniform(0.05, 0.1)
        for epoch in range(self.epochs):
            score = level * (1 - math.exp(-(epoch + 1) / 5))
            if score > self.best["score"]:
                self.best = {"epoch": epoch, "score": score, "valid": {"recall@20": score}}
            self.history.append({"epoch": epoch})
            self.on_validation(epoch, self.best["score"])
        return {"best_epoch": self.best["epoch"], "epochs_run": self.epochs, "valid": self.best["valid"]}


def machinery_seconds(trials: int, epochs: int) -> list[float]:
    """Seconds per trial of the worker loop with stub training (LightGCN's space, TikTok's name)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = TuneSettings(model="lightgcn", dataset="tiktok", trials=trials, seeds=0, out=tmp,
                                overrides=[f"train.epochs={epochs}"])
        plan = plan_study(settings, "tiktok")
        study = open_study(plan, open_storage(settings))
        counter = iter(range(10**6))
        original = run.prepare_run
        run.prepare_run = lambda *a, **k: SimpleNamespace(trainer=_StubTrainer(epochs, next(counter)))
        times: list[float] = []
        try:
            worker = Worker(plan, study, dataset=None, progress=False)
            run_trial = worker._run_trial

            def timed(trial, bar):
                tic = time.perf_counter()
                run_trial(trial, bar)
                times.append(time.perf_counter() - tic)
            worker._run_trial = timed
            tic = time.perf_counter()
            worker.run()
            total = time.perf_counter() - tic
        finally:
            run.prepare_run = original
        return times + [total / trials]


def trial_seconds(model: str, dataset: object, epochs: int, folder: Path | None) -> tuple[float, int]:
    """One trial: train and validate ``epochs`` epochs (the model's defaults), no test; with ``folder``, as a
    worker runs it (``checkpoint.pt`` every epoch, ``best.pt`` at every better epoch).  Seconds, checkpoint bytes."""
    from dglmm.train.run import prepare_run, resolve_model_config

    config = resolve_model_config(model, dataset.name, [], [f"train.epochs={epochs}",
                                                            f"train.patience={epochs}", "train.progress=false"])
    tic = time.perf_counter()
    trainer = prepare_run(model, dataset, config, run_dir=folder).trainer
    if folder is not None:
        trainer.config = dataclasses.replace(trainer.config, checkpoint_every=1)
    trainer.fit_validation()
    seconds = time.perf_counter() - tic
    return seconds, (folder / "checkpoint.pt").stat().st_size if folder is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "tiktok"))
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args()
    times = machinery_seconds(args.trials, args.epochs)
    per_trial, loop = times[:-1], times[-1]
    print(f"machinery, {args.trials} stub trials of {args.epochs} epochs: {1000 * np.mean(per_trial):.1f} ms per "
          f"trial (median {1000 * np.median(per_trial):.1f}, last {1000 * per_trial[-1]:.1f}; whole loop "
          f"{1000 * loop:.1f} ms per trial)")
    if not Path(args.data).exists():
        print(f"{args.data}: not found; the LightGCN trial is not timed", file=sys.stderr)
        return
    from dglmm.data.readers import load_dataset

    dataset = load_dataset(args.data)
    trial, _ = trial_seconds(args.model, dataset, args.epochs, None)
    with tempfile.TemporaryDirectory() as tmp:
        kept, size = trial_seconds(args.model, dataset, args.epochs, Path(tmp) / "0")
    name = f"{args.model} trial on {dataset.name}, {args.epochs} epochs with validation"
    print(f"{name}: {trial:.1f} s; with a checkpoint every epoch ({size / 2**20:.1f} MB): {kept:.1f} s "
          f"(x{kept / trial:.3f})")
    print(f"machinery share of a {args.model} trial: {100 * loop / trial:.3f} % (whole loop, mean), "
          f"{100 * per_trial[-1] / trial:.3f} % (last trial, the largest history)")


if __name__ == "__main__":
    main()
