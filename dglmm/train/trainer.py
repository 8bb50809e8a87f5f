"""The training loop: BPR batches, early stopping on validation, checkpoints, resume, the run folder.

A run folder holds ``config.yaml`` (the options set), ``resolved.yaml`` (every option with its default, and the
dglmm version), ``metrics.jsonl`` (one line per epoch),
``checkpoint.pt`` (the last completed epoch: model, optimiser, sampler and RNG states), ``best.pt`` (the
best-validation model), ``results.json`` (written atomically at the end), ``per_user_test.npz`` (the test
metrics of every user, for ``dglmm compare``) and ``curves.png``.  The model's
state includes the graphs it derived during training (learned kNN graphs, added edge types), so the test at
the best epoch, ``--resume`` and ``dglmm evaluate`` all use the graphs of the epoch they load.

Checkpoints hold only tensors, numbers, strings and plain containers, so that they are read back with
``weights_only=True`` (:func:`dglmm.io.load_checkpoint`).  Progress: a bar while an epoch runs when
stderr is a terminal, otherwise one line per epoch on stderr (``train.progress=false`` silences both).

Epochs are numbered from 1 wherever a user reads them: the console, ``metrics.jsonl``, ``results.json``'s
``best_epoch``, the summary tables and ``curves.png``.  Only the loop index handed to the model's hooks and the
``epoch`` of ``checkpoint.pt`` count from 0 (internal; :data:`EPOCH_NUMBERING` marks checkpoints written since).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dgl
import numpy as np
import torch
from tqdm import tqdm

from dglmm.config import TrainConfig
from dglmm.data.dataset import Dataset
from dglmm.data.sampler import BPRSampler, CFSampler, ExtraSampler
from dglmm.errors import CheckpointError, Interrupted
from dglmm.io import load_checkpoint, make_folder, save_torch, write_json, write_npz
from dglmm.models.base import Batch, Recommender
from dglmm.options import validate
from dglmm.train import distributed
from dglmm.train.evaluate import PerUser, evaluate_full_ranking, summarize

__all__ = ["TrainConfig", "Trainer", "negative_pool", "seed_everything"]  # TrainConfig lives in dglmm.config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def negative_pool(dataset: Dataset, pool: str) -> np.ndarray | None:
    """Items negatives are drawn from: all (None) or those with a training interaction."""
    if pool == "all":
        return None
    return np.flatnonzero(dataset.item_train_counts() > 0)  # "train_items" (the choices of TrainConfig)


def numpy_rng_state() -> dict:
    """``np.random.get_state()`` as tensors and numbers (readable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_rng_state(state: dict) -> None:
    """Restore the global numpy RNG from :func:`numpy_rng_state`."""
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


EPOCH_NUMBERING = 1  # the number of the first epoch in a checkpoint's ``history`` and ``best`` (older: 0)
CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "sampler", "extra_samplers", "torch_rng", "numpy_rng",
                   "python_rng", "best", "best_state", "bad_evals", "history")


def legacy_optimizer_state(model: Recommender, model_state: dict, optimizer_state: dict) -> dict:
    """An optimiser state over ``model.parameters()`` written when some parameters had former names
    (:meth:`Recommender.upgrade_state_dict`) and so possibly another order: its per-parameter state (Adam's
    moments) moved to the positions the parameters have now.  Other states are returned unchanged."""
    upgraded = list(model.upgrade_state_dict(model_state))
    names = [k for k, _ in model.named_parameters()]
    old = [k for k in upgraded if k in set(names)]
    if upgraded == list(model_state) or old == names or sorted(old) != sorted(names):
        return optimizer_state  # current, or not this model's (load_state_dict refuses it)
    position = {name: i for i, name in enumerate(names)}
    moved = {position[old[i]]: value for i, value in optimizer_state["state"].items()}
    return {**optimizer_state, "state": moved}


class Trainer:
    """Trains one model on one dataset split and tests it with the best-validation state."""

    def __init__(self, model: Recommender, graph: dgl.DGLGraph, dataset: Dataset, config: TrainConfig,
                 run_dir: Path | str | None = None,
                 candidates: dict[str, np.ndarray] | None = None) -> None:
        """``candidates``: per split, the only items ranked (cold-start protocol); None ranks all items."""
        validate(config, "train")  # a TrainConfig made directly in Python gets the checks of a YAML one
        self.dist = distributed.current()  # None in a single process
        if self.dist is not None and not self.dist.is_main:  # only rank 0 writes and reports
            config, run_dir = dataclasses.replace(config, progress=False), None
        self.config = config
        self.candidates = candidates or {}
        self.device = self.dist.device(config.device) if self.dist else torch.device(config.device)
        self.model = model.to(self.device)
        self.model.bind_graphs(self.device)
        self.graph = graph.to(self.device)
        self.dataset = dataset
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sampler: CFSampler = BPRSampler(dataset.train, dataset.n_users, dataset.n_items, config.batch_size,
                                  seed=config.seed, item_pool=negative_pool(dataset, config.negative_pool))
        self.extra_samplers = model.extra_samplers(dataset, config.batch_size, config.seed + 1)
        for name, s in self.extra_samplers.items():
            if not isinstance(s, ExtraSampler):
                raise TypeError(f"{type(model).__name__}.extra_samplers()[{name!r}] is a {type(s).__name__}, "
                                "not a dglmm.data.sampler.ExtraSampler")
        # a phase sampler with ``own_optimizer`` gets an Adam of its own (KGAT's official opt2 for L_KG)
        self.phase_optimizers = {
            name: torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            for name, s in self.extra_samplers.items() if s.phase and s.own_optimizer}
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best = {"epoch": 0, "score": -float("inf"), "valid": {}}  # epoch 0: none validated yet
        self.best_state: dict | None = None
        self.bad_evals = 0
        self._snapshot: dict | None = None
        self._parallel = distributed.DataParallelStep(self.model, self.dist) if self.dist else None
        #: called as ``on_validation(epoch, best validation metric so far)`` after every validation; it may
        #: raise to stop training (``dglmm tune``'s pruning)
        self.on_validation: Callable[[int, float], None] | None = None

    # -- one epoch --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch: every BPR batch (with one sample of each per-batch extra sampler), then the batches of
        each phase sampler (e.g. KGAT's TransR phase), each an optimiser step; returns the mean of each term."""
        self.model.train()
        self.model.on_epoch_start(epoch, self.graph)
        self.model.bind_graphs(self.device)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        per_batch = {n: s for n, s in self.extra_samplers.items() if not s.phase}
        phases = {n: s for n, s in self.extra_samplers.items() if s.phase}
        bar = tqdm(self.sampler, total=len(self.sampler), desc=f"epoch {epoch}", leave=False,
                   disable=not self._show_bar())
        for batch_index, (users, pos, neg) in enumerate(bar):
            extras = {name: sampler.sample() for name, sampler in per_batch.items()}
            self.model.on_batch_start(batch_index)
            self._step(Batch(users, pos, neg, extras).to(self.device), epoch, sums, counts)
            bar.set_postfix({k: f"{v / counts[k]:.4f}" for k, v in sums.items()})
        empty = torch.zeros(0, dtype=torch.long)
        for name, sampler in phases.items():
            optimizer = self.phase_optimizers.get(name, self.optimizer)
            for sample in sampler:
                self._step(Batch(empty, empty, empty, {name: sample}).to(self.device), epoch, sums, counts,
                           optimizer)
        self.model.on_epoch_end(epoch, self.graph)
        self.model.bind_graphs(self.device)
        return {name: value / counts[name] for name, value in sums.items()}

    def _step(self, batch: Batch, epoch: int, sums: dict[str, float], counts: dict[str, int],
              optimizer: torch.optim.Optimizer | None = None) -> None:
        """One step of ``optimizer`` (default: the main one) on the summed loss terms of ``batch``; accumulates
        each term for the log.  Under torchrun the step is data-parallel
        (:class:`dglmm.train.distributed.DataParallelStep`)."""
        optimizer = optimizer or self.optimizer
        if self._parallel is not None:
            values = self._parallel(self.graph, batch, optimizer, f"epoch {epoch}")
        else:
            terms = self.model.loss(self.model.training_forward(self.graph, batch), batch)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: "
                                         + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            values = {name: value.item() for name, value in terms.items()}
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1

    def evaluate(self, split: str, item_subset: np.ndarray | None = None) -> dict[str, float]:
        """Full-ranking metrics on ``split`` with the current parameters."""
        return summarize(self.evaluate_per_user(split, item_subset))

    @torch.no_grad()
    def evaluate_per_user(self, split: str, item_subset: np.ndarray | None = None) -> PerUser:
        """Per-user metrics on ``split`` (``user``, ``n_relevant`` and every metric); under torchrun each rank
        ranks a share of the users and the shares are gathered."""
        self.model.eval()
        reps = self.model(self.graph)
        masks = ("train", "valid") if split == "test" and self.config.mask_valid_in_test else ("train",)
        _, per_user = evaluate_full_ranking(
            lambda users: self.model.score(reps, users.to(self.device)), self.dataset, split=split,
            ks=self.config.ks, chunk_size=self.config.eval_chunk_size, mask_splits=masks,
            item_subset=item_subset, candidate_items=self.candidates.get(split), return_per_user=True,
            user_shard=distributed.shard_users if self.dist else None)
        return distributed.gather_per_user(per_user)

    # -- the loop -----------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until early stopping, then test with the best-validation state; returns the results."""
        started = time.time()
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                if self._run_epoch(epoch):
                    break
        except KeyboardInterrupt:
            self._write_checkpoint()
            saved = self.run_dir is not None and self._snapshot is not None
            raise Interrupted(self.run_dir if saved else None) from None
        except distributed.PeerFailure as failure:  # rank 0 keeps the last completed epoch
            self._write_checkpoint()
            if self.run_dir is None or self._snapshot is None:
                raise
            raise distributed.PeerFailure(f"{failure}; the last completed epoch is in {self.run_dir}: continue "
                                          f"with torchrun ... -m dglmm train --resume {self.run_dir}") from None
        return self._finish(time.time() - started)

    def fit_validation(self) -> dict:
        """Train until early stopping like :meth:`fit` but never look at the test split: the search trials of
        ``dglmm tune`` select on validation only.  Returns the best validation epoch and metrics."""
        started = time.time()
        for epoch in range(self.start_epoch, self.config.epochs):
            if self._run_epoch(epoch):
                break
        return {"best_epoch": self.best["epoch"], "epochs_run": len(self.history), "valid": self.best["valid"],
                "train_seconds": round(time.time() - started, 2)}

    def _run_epoch(self, epoch: int) -> bool:
        """Train, validate, record; returns True when early stopping triggers."""
        tic = time.time()
        losses = self.train_epoch(epoch)
        record = {"epoch": epoch + 1, "train_seconds": round(time.time() - tic, 3), **losses}
        stop = False
        if (epoch + 1) % self.config.eval_every == 0:
            valid = self.evaluate("valid")
            record["valid"] = valid
            stop = self._track_best(epoch + 1, valid)
            if self.on_validation is not None:
                self.on_validation(epoch + 1, self.best["score"])
        if self.config.progress and not self._show_bar():
            print(self._epoch_line(record), file=sys.stderr, flush=True)
        self.history.append(record)
        self._append_metrics(record)
        self._snapshot = self._state(epoch)
        last = stop or epoch + 1 == self.config.epochs  # a finished run can be continued with a longer budget
        if self.run_dir is not None and ((epoch + 1) % self.config.checkpoint_every == 0 or last):
            self._write_checkpoint()
        return stop

    def _show_bar(self) -> bool:
        """A tqdm bar only on a terminal: redirected to a file, its carriage-return frames are noise."""
        return self.config.progress and sys.stderr.isatty()

    def _epoch_line(self, record: dict) -> str:
        """``epoch 3/60  bpr 0.6812  l2 0.0031  valid recall@20 0.0412 *  1.24 s`` (``*``: new best)."""
        skip = {"epoch", "train_seconds", "valid"}
        parts = [f"epoch {record['epoch']}/{self.config.epochs}"]
        parts += [f"{name} {value:.4f}" for name, value in record.items() if name not in skip]
        if "valid" in record:
            metric = self.config.metric
            best = " *" if self.best["epoch"] == record["epoch"] else ""
            parts.append(f"valid {metric} {record['valid'][metric]:.4f}{best}")
        parts.append(f"{record['train_seconds']:.2f} s")
        return "  ".join(parts)

    def _track_best(self, epoch: int, valid: dict[str, float]) -> bool:
        """Record ``valid`` of epoch number ``epoch`` (from 1); True when patience is exhausted."""
        score = valid[self.config.metric]
        if score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score, "valid": valid}
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.bad_evals = 0
            if self.run_dir is not None:
                save_torch(self.run_dir / "best.pt", {"model": self.best_state, "best": self.best})
        else:
            self.bad_evals += 1
        return self.bad_evals >= self.config.patience

    def _finish(self, seconds: float) -> dict:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        per_user = self.evaluate_per_user("test")
        test = summarize(per_user)
        results = {"best_epoch": self.best["epoch"], "epochs_run": len(self.history),
                   "valid": self.best["valid"], "test": test, **self._item_groups(),
                   "train_seconds": round(seconds, 2)}
        if self.run_dir is not None:
            write_json(self.run_dir / "results.json", results)
            write_npz(self.run_dir / "per_user_test.npz", per_user)
            self._plot_curves()
        return results

    def _item_groups(self) -> dict[str, dict[str, float]]:
        """Test metrics restricted to cold items (0 training interactions) and to few-interaction items."""
        counts = self.dataset.item_train_counts()
        groups = {"test_cold": np.flatnonzero(counts == 0),
                  "test_few": np.flatnonzero((counts > 0) & (counts <= self.config.few_interactions))}
        return {name: self.evaluate("test", item_subset=items) for name, items in groups.items() if len(items)}

    # -- persistence ----------------------------------------------------------------------------------------
    def _state(self, epoch: int) -> dict:
        return {
            "epoch": epoch, "epoch_numbering": EPOCH_NUMBERING, "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()), "sampler": self.sampler.state_dict(),
            "phase_optimizers": {name: copy.deepcopy(o.state_dict()) for name, o in self.phase_optimizers.items()},
            "extra_samplers": {name: s.state_dict() for name, s in self.extra_samplers.items()},
            "torch_rng": torch.get_rng_state(), "numpy_rng": numpy_rng_state(),
            "python_rng": random.getstate(), "best": self.best, "best_state": self.best_state,
            "bad_evals": self.bad_evals, "history": list(self.history),
        }

    def _write_checkpoint(self) -> None:
        """Write the state of the last COMPLETED epoch (a half-done epoch is never saved)."""
        if self.run_dir is not None and self._snapshot is not None:
            save_torch(self.run_dir / "checkpoint.pt", self._snapshot)

    def resume(self, path: Path | str) -> None:
        """Continue from a checkpoint: the next epoch is the one after the checkpointed one."""
        state = load_checkpoint(path, map_location=self.device)
        missing = [key for key in CHECKPOINT_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(legacy_optimizer_state(self.model, state["model"], state["optimizer"]))
            for name, optimizer in self.phase_optimizers.items():  # absent from checkpoints before they existed
                if name in state.get("phase_optimizers", {}):
                    optimizer.load_state_dict(
                        legacy_optimizer_state(self.model, state["model"], state["phase_optimizers"][name]))
            self.sampler.load_state_dict(state["sampler"])
            for name, sampler in self.extra_samplers.items():
                sampler.load_state_dict(state["extra_samplers"][name])
            torch.set_rng_state(state["torch_rng"].cpu())
            set_numpy_rng_state(state["numpy_rng"])
            random.setstate(_as_tuples(state["python_rng"]))
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: does not fit this run's model or trainer: "
                                  f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
        self.best, self.best_state = state["best"], state["best_state"]
        if self.best_state is not None:  # under the parameters' current names (best.pt, the final test)
            self.best_state = self.model.upgrade_state_dict(self.best_state)
        self.bad_evals, self.history = state["bad_evals"], state["history"]
        if state.get("epoch_numbering", 0) != EPOCH_NUMBERING:  # written when epochs were counted from 0
            shift = EPOCH_NUMBERING - state.get("epoch_numbering", 0)
            self.history = [{**r, "epoch": r["epoch"] + shift} for r in self.history]
            self.best = {**self.best, "epoch": self.best["epoch"] + shift}
        self.start_epoch = state["epoch"] + 1
        self._snapshot = state
        if self.run_dir is not None:  # metrics.jsonl may hold epochs after the checkpoint: rewrite it
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            (self.run_dir / "metrics.jsonl").write_text(lines)

    def _append_metrics(self, record: dict) -> None:
        if self.run_dir is not None:
            make_folder(self.run_dir)
            fresh = self.start_epoch == 0 and len(self.history) == 1  # a new run replaces an earlier attempt's log
            with open(self.run_dir / "metrics.jsonl", "w" if fresh else "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _plot_curves(self) -> None:
        from dglmm.plots import plot_training_curves

        plot_training_curves(self.history, self.run_dir / "curves.png", self.config.metric)


def _as_tuples(value):
    """``random.getstate()`` after a round trip: nested lists back to tuples."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value
