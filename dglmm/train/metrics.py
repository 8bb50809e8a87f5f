"""Top-K ranking metrics from a boolean hit matrix, vectorised in torch.

Notation for one user: ``rel_r`` is 1 when the item at (0-based) rank ``r`` is relevant, ``|GT|`` the number of
relevant items and ``hits@K = sum_{r<K} rel_r``.

* ``recall@K    = hits@K / |GT|``
* ``precision@K = hits@K / K``
* ``ndcg@K      = DCG@K / IDCG@K`` with ``DCG@K = sum_{r<K} rel_r / log2(r + 2)`` and
  ``IDCG@K = sum_{r < min(|GT|, K)} 1 / log2(r + 2)`` (binary relevance)
* ``map@K       = sum_{r<K} precision@(r+1) * rel_r / min(|GT|, K)`` (MMRec's definition)
* ``hit@K       = 1 if hits@K > 0 else 0`` (hit rate)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dglmm.metric_keys import DEFAULT_KS, METRICS, metric_names

__all__ = ["DEFAULT_KS", "METRICS", "metric_names", "topk_metrics"]


def topk_metrics(hits: torch.Tensor, n_relevant: torch.Tensor,
                 ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user metrics (float64 ``[B]`` each) for every ``K`` in ``ks``; see the module docstring.

    Args:
        hits: bool ``[B, Kmax]``, ``hits[b, r]`` is whether user ``b``'s item at rank ``r`` is relevant;
            ``Kmax >= max(ks)`` (pad with ``False`` when fewer items could be ranked).
        n_relevant: ``[B]`` number of relevant items of each user (must be ``>= 1``).
    """
    if hits.dim() != 2 or hits.shape[0] != n_relevant.shape[0]:
        raise ValueError(f"hits must be [B, Kmax] and n_relevant [B]; got {tuple(hits.shape)}, "
                         f"{tuple(n_relevant.shape)}")
    if ks and max(ks) > hits.shape[1]:
        raise ValueError(f"hit matrix has {hits.shape[1]} ranks, fewer than K = {max(ks)}")
    h = hits.to(torch.float64)
    ranks = torch.arange(1, h.shape[1] + 1, dtype=torch.float64, device=h.device)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = h.cumsum(1)
    cum_dcg = (h * discount).cumsum(1)
    cum_ap = (cum_hits / ranks * h).cumsum(1)
    ideal = discount.cumsum(0)
    n_rel = n_relevant.to(device=h.device, dtype=torch.long).clamp(min=1)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        n_hit = cum_hits[:, k - 1]
        capped = n_rel.clamp(max=k)
        out[f"recall@{k}"] = n_hit / n_rel
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / ideal[capped - 1]
        out[f"precision@{k}"] = n_hit / k
        out[f"map@{k}"] = cum_ap[:, k - 1] / capped
        out[f"hit@{k}"] = (n_hit > 0).to(torch.float64)
    return out
