"""Full-ranking evaluation (docs/protocol.md): every user is ranked against all items.

Protocol of :func:`evaluate_full_ranking`:

* evaluated users have at least one item in the target split *and* at least one training interaction; users
  without training data are left out, as MMRec does;
* the items of the masked splits (``train`` by default, ``valid`` too for the test split when
  ``mask_valid=True``) get score ``-inf`` so they never reach the top-K; they still count in ``|GT|`` if a
  split overlaps the target split (then they can never be hit);
* NaN scores are treated as ``-inf``;
* ties are broken by lower item id (see :func:`stable_topk`);
* metrics (:mod:`dglmm.train.metrics`) are averaged over the evaluated users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import torch

from dglmm.data.dataset import Dataset
from dglmm.train.metrics import DEFAULT_KS, metric_names, topk_metrics

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
PerUser = dict[str, np.ndarray]


@dataclass(frozen=True)
class InteractionIndex:
    """CSR view of a set of (user, item) pairs: the items of user ``u`` are ``indices[indptr[u]:indptr[u+1]]``
    (sorted, without duplicates)."""

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @classmethod
    def from_pairs(cls, pairs: np.ndarray, n_users: int, n_items: int) -> InteractionIndex:
        """Build from int ``[n, 2]`` (user, item) pairs; duplicates are dropped."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        keys = np.unique(pairs[:, 0] * n_items + pairs[:, 1])
        users, items = np.divmod(keys, n_items)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return cls(indptr, items, n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> np.ndarray:
        """Number of items of every user."""
        return np.diff(self.indptr)

    def items_of(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def coo(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row position in ``users``, item) of every interaction of ``users``, vectorised."""
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.indices[np.repeat(starts, lengths) + offsets]

    def dense(self, users: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Boolean ``[len(users), n_items]`` membership matrix."""
        rows, cols = self.coo(users)
        out = torch.zeros(len(users), self.n_items, dtype=torch.bool, device=device)
        out[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = True
        return out


def stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, min(k, n_items)]`` of the largest scores, by score descending, ties by lower item id.

    Method: ``torch.topk`` gives the K-th largest value ``t`` of each row; every item scoring above ``t`` is
    taken, and the remaining places go to the lowest-id items scoring exactly ``t`` (``nonzero`` lists the
    candidates ``>= t`` in id order; a per-row running count of the ties keeps the first ones).  The selected
    items, in id order, are then sorted by score with a stable descending sort.  The result equals
    ``np.argsort(-scores, kind="stable")[:, :k]``.  NaN scores are not supported (:func:`rank_topk` maps them
    to ``-inf``).
    """
    n_rows, k = scores.shape[0], min(k, scores.shape[1])
    if k <= 0 or n_rows == 0:
        return torch.zeros(n_rows, max(k, 0), dtype=torch.long, device=scores.device)
    top = scores.topk(k, dim=1, sorted=False).values
    kth = top.amin(1, keepdim=True)
    rows, cols = (scores >= kth).nonzero(as_tuple=True)
    if rows.numel() != n_rows * k:
        rows, cols = _first_ties(scores, kth, top, rows, cols)
    idx = cols.view(n_rows, k)
    order = scores.gather(1, idx).sort(dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def _first_ties(scores: torch.Tensor, kth: torch.Tensor, top: torch.Tensor, rows: torch.Tensor,
                cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep, among candidates ``>= kth`` (row-major, id order), all above ``kth`` and the first ties."""
    places = top.shape[1] - (top > kth).sum(1, dtype=torch.int64)
    is_tie = scores[rows, cols] == kth[rows, 0]
    running = is_tie.cumsum(0)
    counts = torch.bincount(rows, minlength=scores.shape[0])
    starts = counts.cumsum(0) - counts
    before = running[starts] - is_tie[starts].long()
    keep = ~is_tie | (running - before[rows] <= places[rows])
    return rows[keep], cols[keep]


def rank_topk(scores: torch.Tensor, mask_rows: torch.Tensor | None, mask_cols: torch.Tensor | None,
              k: int) -> torch.Tensor:
    """Top-``k`` item indices of each row after setting ``scores[mask_rows, mask_cols]`` (and NaN) to ``-inf``.

    ``scores`` is not modified.  Ties are broken by lower item id (:func:`stable_topk`); when fewer than ``k``
    items are unmasked, masked items fill the tail in id order.
    """
    return stable_topk(_masked(scores, mask_rows, mask_cols), k)


def _masked(scores: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    """A copy of ``scores`` with ``-inf`` at (rows, cols) and in place of NaN."""
    inf = float("inf")
    out = torch.nan_to_num(scores, nan=-inf, posinf=inf, neginf=-inf)  # also the copy
    if rows is not None and cols is not None and rows.numel():
        out[rows.to(out.device), cols.to(out.device)] = float("-inf")
    return out


def _evaluated_users(dataset: Dataset, target: InteractionIndex) -> np.ndarray:
    """Users with ground truth in the target split and at least one training interaction."""
    has_train = dataset.user_train_counts() > 0
    return np.flatnonzero((target.counts() > 0) & has_train)


def _mask_index(dataset: Dataset, split: str, mask_splits: Sequence[str] | None,
                mask_valid: bool) -> InteractionIndex:
    names = list(mask_splits) if mask_splits is not None else ["train"]
    if mask_valid and split == "test" and "valid" not in names:
        names.append("valid")
    pairs = np.concatenate([dataset.split(s).reshape(-1, 2) for s in names]) if names else np.zeros((0, 2))
    return InteractionIndex.from_pairs(pairs, dataset.n_users, dataset.n_items)


def _target_index(dataset: Dataset, split: str, item_subset: np.ndarray | None) -> InteractionIndex:
    pairs = dataset.split(split)
    if item_subset is not None:
        pairs = pairs[np.isin(pairs[:, 1], np.asarray(item_subset))]
    return InteractionIndex.from_pairs(pairs, dataset.n_users, dataset.n_items)


def _score_chunk(score_fn: ScoreFn, users: np.ndarray, masks: InteractionIndex, target: InteractionIndex,
                 ks: Sequence[int], device: torch.device | str,
                 allowed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-user metrics of one chunk of users (``allowed``: bool [n_items] candidate items, or None)."""
    scores = score_fn(torch.from_numpy(users).to(device))
    if scores.shape != (len(users), masks.n_items):
        raise ValueError(f"score_fn returned {tuple(scores.shape)}, expected {(len(users), masks.n_items)}")
    dev = scores.device
    if allowed is not None:
        allowed = allowed.to(dev)
        scores = scores.masked_fill(~allowed, float("-inf"))
    rows, cols = (torch.from_numpy(a).to(dev) for a in masks.coo(users))
    idx = rank_topk(scores, rows, cols, max(ks))
    hits = target.dense(users, dev).gather(1, idx) & ~masks.dense(users, dev).gather(1, idx)
    if allowed is not None:
        hits &= allowed[idx]
    hits = torch.nn.functional.pad(hits, (0, max(ks) - hits.shape[1]))
    n_rel = torch.from_numpy(target.counts()[users]).to(dev)
    return topk_metrics(hits, n_rel, ks)


@overload
def evaluate_full_ranking(score_fn: ScoreFn, dataset: Dataset, split: str = ..., ks: Sequence[int] = ...,
                          chunk_size: int = ..., mask_splits: Sequence[str] | None = ..., mask_valid: bool = ...,
                          device: torch.device | str | None = ..., item_subset: np.ndarray | None = ...,
                          candidate_items: np.ndarray | None = ...,
                          return_per_user: Literal[False] = ...,
                          user_shard: Callable[[np.ndarray], np.ndarray] | None = ...) -> dict[str, float]: ...


@overload
def evaluate_full_ranking(score_fn: ScoreFn, dataset: Dataset, split: str = ..., ks: Sequence[int] = ...,
                          chunk_size: int = ..., mask_splits: Sequence[str] | None = ..., mask_valid: bool = ...,
                          device: torch.device | str | None = ..., item_subset: np.ndarray | None = ...,
                          candidate_items: np.ndarray | None = ...,
                          *, return_per_user: Literal[True],
                          user_shard: Callable[[np.ndarray], np.ndarray] | None = ...
                          ) -> tuple[dict[str, float], PerUser]: ...


def evaluate_full_ranking(score_fn: ScoreFn, dataset: Dataset, split: str = "valid",
                          ks: Sequence[int] = DEFAULT_KS, chunk_size: int = 1024,
                          mask_splits: Sequence[str] | None = ("train",), mask_valid: bool = False,
                          device: torch.device | str | None = None, item_subset: np.ndarray | None = None,
                          candidate_items: np.ndarray | None = None,
                          return_per_user: bool = False,
                          user_shard: Callable[[np.ndarray], np.ndarray] | None = None,
                          ) -> dict[str, float] | tuple[dict[str, float], PerUser]:
    """Full-ranking metrics of ``score_fn`` on ``split`` (protocol in the module docstring).

    Args:
        score_fn: maps a LongTensor of user ids (on ``device``) to scores ``[len(users), n_items]``.
        mask_splits: splits whose items are excluded from the ranking (``None`` = ``("train",)``).
        mask_valid: with ``split="test"``, also mask the validation items.
        item_subset: restrict the ground truth to these items (e.g. long-tail items); users without ground
            truth in the subset are skipped; masking is unchanged.
        candidate_items: rank only these items (all others are excluded from every top-K), e.g. the cold
            items of the split in the cold-start protocol; ``None`` ranks all items.
        return_per_user: also return ``{"user": ids, "n_relevant": ..., "<metric>@K": ...}`` arrays.
        user_shard: maps the evaluated users (sorted ids) to the part this call scores (a rank's share in
            data-parallel runs, :func:`dglmm.train.distributed.shard_users`); the result covers that part.

    Returns:
        ``{"recall@20": mean, ..., "n_users": count}``; metrics are NaN when no user is evaluated.
    """
    device = device if device is not None else "cpu"
    masks = _mask_index(dataset, split, mask_splits, mask_valid)
    target = _target_index(dataset, split, item_subset)
    users = _evaluated_users(dataset, target)
    if user_shard is not None:
        users = user_shard(users)
    allowed = None
    if candidate_items is not None:
        allowed = torch.zeros(dataset.n_items, dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(candidate_items, dtype=np.int64))] = True
    parts: dict[str, list[np.ndarray]] = {name: [] for name in metric_names(ks)}
    with torch.no_grad():
        for start in range(0, len(users), chunk_size):
            chunk = _score_chunk(score_fn, users[start:start + chunk_size], masks, target, ks, device, allowed)
            for name, values in chunk.items():
                parts[name].append(values.cpu().numpy())
    per_user = {"user": users, "n_relevant": target.counts()[users],
                **{name: np.concatenate(v) if v else np.zeros(0) for name, v in parts.items()}}
    summary = summarize(per_user)
    return (summary, per_user) if return_per_user else summary


def summarize(per_user: PerUser) -> dict[str, float]:
    """Means over users of every metric of per-user arrays (NaN when empty) and ``n_users``."""
    metrics = {n: v for n, v in per_user.items() if n not in ("user", "n_relevant")}
    summary: dict[str, float] = {n: float(v.mean()) if len(v) else float("nan") for n, v in metrics.items()}
    summary["n_users"] = len(per_user["user"])
    return summary


def popularity_scores(dataset: Dataset) -> torch.Tensor:
    """Float32 ``[n_items]`` training interaction counts (the most-popular ranker)."""
    return torch.from_numpy(dataset.item_train_counts().astype(np.float32))


def evaluate_popularity(dataset: Dataset, split: str = "test", **kwargs) -> dict[str, float]:
    """:func:`evaluate_full_ranking` (``kwargs`` but ``return_per_user``) of the most-popular ranker, the
    baseline every model should beat; ties in popularity go to the lower item id."""
    pop = popularity_scores(dataset)

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return pop.to(users.device).expand(len(users), -1)

    return evaluate_full_ranking(score_fn, dataset, split=split, **kwargs)
