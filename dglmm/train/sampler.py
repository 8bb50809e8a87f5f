"""BPR triples: every training interaction once per epoch, with uniformly sampled unobserved negatives."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_MAX_REJECTION_ROUNDS = 32


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
