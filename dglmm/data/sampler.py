"""Samplers: BPR triples (every training interaction once per epoch, uniformly sampled unobserved negatives) and
the samplers a model adds beside them (KG triples for KGAT's TransR loss).

They sit below the models (a model's :meth:`~dglmm.models.Recommender.extra_samplers` returns them) and the
trainer drives them through two typed protocols: :class:`CFSampler` (the BPR batches of an epoch) and
:class:`ExtraSampler`, whose declared attributes ``phase`` and ``own_optimizer`` say how it runs.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_MAX_REJECTION_ROUNDS = 32


@runtime_checkable
class CFSampler(Protocol):
    """The trainer's BPR sampler: an epoch of ``(users, pos, neg)`` batches, resumable from its state."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ExtraSampler(abc.ABC):
    """A sampler beside the BPR one (:meth:`~dglmm.models.Recommender.extra_samplers`), checkpointed with it.

    ``phase = False``: :meth:`sample` gives one sample to every BPR batch (``Batch.extras[name]``).
    ``phase = True``: iterated after the BPR batches of every epoch, each sample a batch of its own (KGAT's
    alternation of its CF and KG losses); with ``own_optimizer = True`` those batches are stepped by an Adam of
    their own (KGAT's official ``opt2``), checkpointed too.  The trainer reads these two attributes, declared
    here, and refuses a sampler that is not an :class:`ExtraSampler`.
    """

    def __init__(self, phase: bool = False, own_optimizer: bool = False) -> None:
        if own_optimizer and not phase:
            raise ValueError("own_optimizer applies to a phase sampler (phase=True)")
        self.phase: bool = phase
        self.own_optimizer: bool = own_optimizer

    @abc.abstractmethod
    def sample(self) -> Any:
        """One sample (one batch's worth)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Batches per epoch of a phase sampler."""

    def __iter__(self) -> Iterator[Any]:
        for _ in range(len(self)):
            yield self.sample()

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BPRSampler:
    """Batches ``(users, pos, neg)`` of LongTensors over a random permutation of the training pairs.

    Each epoch visits every training interaction exactly once (LightGCN / MMRec).  Negatives are uniform over
    the items the user has *not* interacted with in training: items are drawn uniformly, membership is checked
    against the sorted keys ``user * n_items + item`` with ``np.searchsorted``, and only the violating entries
    are redrawn (after a few rounds the rare leftovers are drawn directly from their user's allowed items).
    ``neg`` is ``[b]`` when ``neg_per_pos == 1`` and ``[b, neg_per_pos]`` otherwise.  ``item_pool`` restricts
    the negatives to a set of items (e.g. the items seen in training, so that cold items stay unseen).

    The whole epoch (permutation and negatives) is drawn when iteration starts, so :meth:`state_dict` taken any
    time after that (typically after the epoch) resumes with exactly the batches of the next epoch.
    """

    def __init__(self, train_pairs: np.ndarray, n_users: int, n_items: int, batch_size: int,
                 seed: int = 0, neg_per_pos: int = 1, item_pool: np.ndarray | None = None) -> None:
        pairs = np.asarray(train_pairs, dtype=np.int64).reshape(-1, 2)
        if batch_size < 1 or neg_per_pos < 1:
            raise ValueError("batch_size and neg_per_pos must be >= 1")
        self.users, self.items = pairs[:, 0].copy(), pairs[:, 1].copy()
        self.n_users, self.n_items = n_users, n_items
        self.batch_size, self.neg_per_pos = batch_size, neg_per_pos
        self.keys = np.unique(self.users * n_items + self.items)
        self.pool = np.arange(n_items) if item_pool is None else np.unique(np.asarray(item_pool, np.int64))
        pool_keys = self.keys[np.isin(self.keys % n_items, self.pool)]
        full = np.flatnonzero(np.bincount(pool_keys // n_items, minlength=n_users) >= len(self.pool))
        if len(full):
            raise ValueError(f"users {full[:5].tolist()} interacted with every item: no negative exists")
        self.rng = np.random.default_rng(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        perm = self.rng.permutation(len(self.users))
        users, pos = self.users[perm], self.items[perm]
        neg = self.sample_negatives(np.repeat(users, self.neg_per_pos))
        if self.neg_per_pos > 1:
            neg = neg.reshape(-1, self.neg_per_pos)
        self.epoch += 1
        return self._batches(users, pos, neg)

    def _batches(self, users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> Iterator[Batch]:
        for start in range(0, len(users), self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield torch.from_numpy(users[sl]), torch.from_numpy(pos[sl]), torch.from_numpy(neg[sl])

    def is_observed(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a training interaction."""
        query = users * self.n_items + items
        if not len(self.keys):
            return np.zeros(len(query), dtype=bool)
        at = np.searchsorted(self.keys, query).clip(max=len(self.keys) - 1)
        return self.keys[at] == query

    def sample_negatives(self, users: np.ndarray) -> np.ndarray:
        """One uniform unobserved item per entry of ``users`` (int64)."""
        neg = self.pool[self.rng.integers(0, len(self.pool), size=len(users))]
        bad = np.flatnonzero(self.is_observed(users, neg))
        for _ in range(_MAX_REJECTION_ROUNDS):
            if not len(bad):
                return neg
            neg[bad] = self.pool[self.rng.integers(0, len(self.pool), size=len(bad))]
            bad = bad[self.is_observed(users[bad], neg[bad])]
        for j in bad:
            neg[j] = self._draw_allowed(int(users[j]))
        return neg

    def _draw_allowed(self, user: int) -> int:
        """Exact uniform draw among the items ``user`` has not interacted with."""
        lo, hi = np.searchsorted(self.keys, [user * self.n_items, (user + 1) * self.n_items])
        allowed = np.setdiff1d(self.pool, self.keys[lo:hi] - user * self.n_items)
        return int(allowed[self.rng.integers(len(allowed))])

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": copy.deepcopy(self.rng.bit_generator.state), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["bit_generator"])
        self.epoch = int(state["epoch"])


class KGTripleSampler(ExtraSampler):
    """Batches of knowledge-graph triples ``(head, relation, tail, corrupted tail)`` for a TransR loss (KGAT).

    ``heads``, ``relations``, ``tails`` are the triples (e.g. every edge of the collaborative KG, inverse
    relations included).  ``mode="head"`` draws heads uniformly among those with a triple, then one of each
    head's triples uniformly (the official KGAT sampler); ``mode="edge"`` draws triples uniformly.  The
    corrupted tail is uniform over ``n_nodes`` and never forms an existing triple with the head and relation
    (vectorised rejection on sorted keys).  With ``phase=True`` the trainer iterates ``n_batches`` batches
    after each epoch's BPR batches, stepped by an Adam of their own when ``own_optimizer`` (KGAT's official
    ``opt2``), else by the main one; otherwise it calls :meth:`sample` once per BPR batch.
    """

    def __init__(self, heads: np.ndarray, relations: np.ndarray, tails: np.ndarray, n_nodes: int,
                 batch_size: int, n_batches: int, seed: int = 0, mode: str = "head", phase: bool = True,
                 own_optimizer: bool = False) -> None:
        super().__init__(phase, own_optimizer)
        if mode not in ("head", "edge"):
            raise ValueError(f"mode must be 'head' or 'edge', got {mode!r}")
        order = np.lexsort((tails, relations, heads))
        self.heads, self.relations, self.tails = heads[order], relations[order], tails[order]
        self.n_nodes, self.n_relations = n_nodes, int(relations.max()) + 1 if len(relations) else 1
        self.batch_size, self.n_batches, self.mode = batch_size, n_batches, mode
        self.keys = np.unique(self._key(self.heads, self.relations, self.tails))
        self.unique_heads, self.starts, self.degrees = np.unique(self.heads, return_index=True, return_counts=True)
        self.rng = np.random.default_rng(seed)

    def _key(self, h: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (h * self.n_relations + r) * self.n_nodes + t

    def __len__(self) -> int:
        return self.n_batches

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch ``(h, r, t, t_neg)`` of LongTensors."""
        if self.mode == "head":
            pick = self.rng.integers(0, len(self.unique_heads), size=self.batch_size)
            rows = self.starts[pick] + (self.rng.random(self.batch_size) * self.degrees[pick]).astype(np.int64)
        else:
            rows = self.rng.integers(0, len(self.heads), size=self.batch_size)
        h, r, t = self.heads[rows], self.relations[rows], self.tails[rows]
        neg = self.rng.integers(0, self.n_nodes, size=len(h))
        bad = np.flatnonzero(self._exists(h, r, neg))
        for _ in range(_MAX_REJECTION_ROUNDS):
            if not len(bad):
                break
            neg[bad] = self.rng.integers(0, self.n_nodes, size=len(bad))
            bad = bad[self._exists(h[bad], r[bad], neg[bad])]
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (h, r, t, neg))  # type: ignore[return-value]

    def _exists(self, h: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        query = self._key(h, r, t)
        at = np.searchsorted(self.keys, query).clip(max=len(self.keys) - 1)
        return self.keys[at] == query

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["bit_generator"])
