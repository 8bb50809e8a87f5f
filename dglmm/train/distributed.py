"""Data-parallel training on ``torch.distributed``: ``torchrun --nproc_per_node=N -m dglmm train ...``.

Every process (rank) holds the whole heterograph, dataset and model.  Per global batch of ``train.batch_size``
BPR triples (drawn identically on every rank: same sampler seed), rank ``r`` takes the contiguous shard
:func:`shard_slice` ``(n, r, N)``; its loss is weighted by ``N * n_r / n`` before DDP averages the gradients,
so the update equals the single-process one (up to summation order) whatever the shard sizes:

* terms that are means over the batch (BPR, the L2 of the batch rows divided by the batch size) add up to the
  mean over the global batch: ``sum_r (n_r / n) mean_r = mean``;
* terms that do not depend on the batch (InfoNCE over all items, orthogonality, extra samplers' terms: every
  rank computes the same value) are counted once, since the weights ``n_r / n`` sum to one; a phase batch
  without BPR rows (KGAT's TransR phase) is computed whole on every rank with weight ``1 / N``;
* terms that depend non-linearly on the batch (an InfoNCE whose negatives are the batch's items,
  ``cl_items='batch'``) are the mean of the shards' terms, not the global batch's term: close, not equal.

Random draws inside ``loss`` (dropout, ``cl_max_items`` subsets) use the global torch RNG, seeded alike and
advanced alike on every rank, so they agree; learned graphs are rebuilt from parameters that DDP keeps equal,
hence identical on every rank.  Full-ranking evaluation is sharded over users (strided) and the per-user
metrics are gathered in user order, so the means are those of a single process.  Only rank 0 writes the run
folder.  A rank that fails makes the collectives of the others fail (a closed connection at once, or the
process-group timeout when a rank hangs): they raise :class:`PeerFailure`, rank 0 writes the checkpoint of the
last completed epoch, and each prints one line.
"""
# PeerFailure lives in dglmm.errors (the CLI catches it without importing torch); re-exported here.

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dglmm.errors import PeerFailure
from dglmm.models.base import Batch, Recommender
from dglmm.options import build, option

__all__ = ["Context", "DataParallelStep", "DistConfig", "PeerFailure", "current", "init_from_env",
           "is_main", "shard_slice"]


@dataclasses.dataclass
class DistConfig:
    """Process-group settings (``dglmm train --backend/--dist-timeout``; used only under ``torchrun``)."""

    backend: str = option("auto", "'gloo' (CPU), 'nccl' (CUDA) or 'auto' (nccl when CUDA is available)",
                          choices=("auto", "gloo", "nccl"))
    timeout: float = option(600.0, "seconds a rank waits in a collective for the others before the run stops",
                            low=0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """``cuda`` / ``cuda:k`` become ``cuda:<local rank>`` (one GPU per process); other devices unchanged."""
        device = torch.device(requested)
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device


_CONTEXT: Context | None = None


def current() -> Context | None:
    """The run's context when this process is one of several ranks, else None (single process)."""
    return _CONTEXT


def is_main() -> bool:
    """True on rank 0 and in a single process: the one that writes files and prints results."""
    return _CONTEXT is None or _CONTEXT.is_main


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(values: dict[str, Any] | None = None) -> Context | None:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...); a no-op returning None for a single process."""
    global _CONTEXT
    config = build(DistConfig, values or {}, "distributed")  # checked in a single process too
    if _CONTEXT is not None or not launched_by_torchrun():
        return _CONTEXT
    backend = config.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=config.timeout))
    _CONTEXT = Context(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    signal.signal(signal.SIGTERM, _terminated)
    return _CONTEXT


def _terminated(signum: int, frame: Any) -> None:
    """torchrun sends SIGTERM to the other ranks when one fails (after up to ``--monitor-interval`` seconds,
    maybe before they notice it themselves): stop like a peer failure, checkpoint and one line included."""
    rank = _CONTEXT.rank if _CONTEXT is not None else 0
    raise PeerFailure(f"rank {rank}: stopped by SIGTERM (torchrun stops every process when one fails)")


def shutdown() -> None:
    """Forget the run's context; the process group itself is released when the process exits.

    ``dist.destroy_process_group()`` is not called: with torch 2.2's gloo backend it can deadlock (the
    destructor joins a gloo worker thread that waits for the GIL to free a tensor of the last collective).
    """
    global _CONTEXT
    _CONTEXT = None


def leave(code: int) -> int:
    """End a process of a torchrun run with exit status ``code``; returns ``code`` unchanged otherwise.

    After a successful run the ranks first meet at a barrier (no collective is left pending), then each flushes
    its output and exits with ``os._exit``: with torch 2.2's gloo backend, the normal interpreter exit runs the
    process group's C++ destructors, which intermittently abort the process ("terminate called without an
    active exception", SIGABRT) after all work is done.  A failed run exits at once (its peers may be gone).
    """
    if not launched_by_torchrun() or not dist.is_available() or not dist.is_initialized():
        return code
    if code == 0:
        try:
            collective(dist.barrier)
        except PeerFailure as exc:
            print(f"dglmm: error: {_one_line(exc)}", file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` rows: sizes differ by at most one, lower ranks larger."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


_COMMUNICATION = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "broken pipe", "socket")


def is_communication_error(exc: BaseException) -> bool:
    """Whether an exception of a collective says that another rank is gone or silent (not a bug here)."""
    backend_error = getattr(dist, "DistBackendError", ())
    return isinstance(exc, backend_error) or any(word in str(exc).lower() for word in _COMMUNICATION)


def collective(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a collective (or a backward pass that all-reduces) and turn a communication failure into
    :class:`PeerFailure`; other errors (bugs) pass through unchanged."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        if isinstance(exc, PeerFailure) or not is_communication_error(exc):
            raise
        rank = _CONTEXT.rank if _CONTEXT is not None else 0
        raise PeerFailure(f"rank {rank}: another process of the run failed or stopped answering "
                          f"({_one_line(exc)})") from None


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run folder's name, which holds a time stamp)."""
    if _CONTEXT is None:
        return value
    box = [value]
    collective(dist.broadcast_object_list, box, src=0)
    return box[0]


class _LossOfBatch(nn.Module):
    """What DDP wraps: one forward = the model's training output and loss terms for a shard of a batch."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, graph: Any, batch: Batch) -> dict[str, torch.Tensor]:
        return self.model.loss(self.model.training_forward(graph, batch), batch)


class DataParallelStep:
    """One optimisation step of the global batch, this rank computing its shard (see the module docstring)."""

    def __init__(self, model: Recommender, context: Context) -> None:
        self.context = context
        device_ids = [context.local_rank] if context.backend == "nccl" else None
        # find_unused_parameters unless the model says every parameter is used in every batch: e.g. a learned
        # graph's projections get gradient on its rebuild batches only, KGAT's phases use different parameters;
        # no buffer broadcast at every step: buffers (KGAT's attention, edge lists) are computed alike on
        # every rank, like the learned graphs (the tests compare every state_dict entry across ranks)
        self.ddp = DistributedDataParallel(_LossOfBatch(model), device_ids=device_ids,
                                           find_unused_parameters=not model.uses_every_parameter,
                                           broadcast_buffers=False,
                                           gradient_as_bucket_view=True)

    def __call__(self, graph: Any, batch: Batch, optimizer: torch.optim.Optimizer,
                 where: str) -> dict[str, float]:
        """Forward, all-reduce of the weighted terms, backward (DDP all-reduces the gradients), step;
        returns the global batch's term values.  ``where`` names the batch in the non-finite-loss error."""
        n, world = len(batch.users), self.context.world_size
        if n == 0:  # a phase batch without BPR rows (e.g. KGAT's TransR phase): every rank computes it whole
            local, weight = batch, 1.0 / world
        else:
            part = shard_slice(n, self.context.rank, world)
            weight = (part.stop - part.start) / n
            if weight == 0:  # fewer rows than ranks: compute on one row with weight 0 to join the all-reduce
                part = slice(0, 1)
            local = Batch(batch.users[part], batch.pos[part], batch.neg[part], batch.extras)
        terms = self.ddp(graph, local)
        names = sorted(terms)
        values = torch.stack([terms[k].detach().double().reshape(()) for k in names]) * weight
        collective(dist.all_reduce, values)
        if not torch.isfinite(values).all():  # every rank sees the reduced values: all stop together
            raise FloatingPointError(f"non-finite loss at {where}: "
                                     + ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values.tolist(), strict=True)))
        loss = sum(terms[k] for k in names) * (weight * world)
        optimizer.zero_grad(set_to_none=True)
        collective(loss.backward)
        optimizer.step()
        return dict(zip(names, values.tolist(), strict=True))


def shard_users(users: np.ndarray) -> np.ndarray:
    """This rank's evaluated users: a strided share, so that chunks cost alike on every rank."""
    if _CONTEXT is None:
        return users
    return users[_CONTEXT.rank::_CONTEXT.world_size]


def gather_per_user(per_user: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every rank's per-user arrays (with a ``user`` key) joined and put back in user order."""
    if _CONTEXT is None:
        return per_user
    parts: list[Any] = [None] * _CONTEXT.world_size
    collective(dist.all_gather_object, parts, {k: np.asarray(v) for k, v in per_user.items()})
    joined = {k: np.concatenate([p[k] for p in parts]) for k in per_user}
    order = np.argsort(joined["user"], kind="stable")
    return {k: v[order] for k, v in joined.items()}
