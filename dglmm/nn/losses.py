"""Loss terms shared by the models (each returns a scalar tensor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of ``-ln sigma(y_ui - y_uj)`` over the batch (MICRO eq. 18)."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum ||t||^2 / 2`` divided by the batch size (the first dimension), as LightGCN/NGCF/MICRO define it."""
    batch = max(1, tensors[0].shape[0])
    return sum(t.pow(2).sum() for t in tensors) / (2 * batch)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
             same_view_negatives: bool = True) -> torch.Tensor:
    """InfoNCE with cosine critic (MICRO eq. 10), averaged over rows.

    Row ``i`` of ``anchor`` is pulled towards row ``i`` of ``positive``; the negatives are the other rows of
    ``positive`` and, when ``same_view_negatives``, the other rows of ``anchor`` itself.  Computed as a
    cross-entropy over the logits ``[a_i . p_j / tau, a_i . a_j / tau (j != i)]``, which is the same quantity
    as ``-log(e^pos / (e^pos + sum of e^neg))`` but stable and with fewer passes over the ``n x n`` matrices.
    """
    a = F.normalize(anchor, dim=-1)
    p = F.normalize(positive, dim=-1)
    logits = a @ p.T / temperature
    if same_view_negatives:
        same = a @ a.T / temperature
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        logits = torch.cat([logits, same.masked_fill(eye, float("-inf"))], 1)
    target = torch.arange(len(a), device=a.device)
    return F.cross_entropy(logits, target)
