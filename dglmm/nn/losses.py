"""Loss terms shared by the models (each returns a scalar tensor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of ``-ln sigma(y_ui - y_uj)`` over the batch (MICRO eq. 18)."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum ||t||^2 / 2`` divided by the batch size (the first dimension), as LightGCN/NGCF/MICRO define it."""
    batch = max(1, tensors[0].shape[0])
    return sum(t.pow(2).sum() for t in tensors) / (2 * batch)


CRITICS = ("cosine", "dot")


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
             same_view_negatives: bool = True, critic: str = "cosine") -> torch.Tensor:
    """InfoNCE, averaged over rows, with a ``cosine`` critic (MICRO eq. 10) or a ``dot`` product one (CAmgr
    eq. 30 as printed: the rows are not normalised).

    Row ``i`` of ``anchor`` is pulled towards row ``i`` of ``positive``; the negatives are the other rows of
    ``positive`` and, when ``same_view_negatives``, the other rows of ``anchor`` itself.  Computed as a
    cross-entropy over the logits ``[a_i . p_j / tau, a_i . a_j / tau (j != i)]``, which is the same quantity
    as ``-log(e^pos / (e^pos + sum of e^neg))`` but stable and with fewer passes over the ``n x n`` matrices.
    Memory is ``O(n^2)``; :func:`info_nce_chunked` gives the same value in ``O(chunk x n)``.
    """
    a, p = _critic_inputs(anchor, positive, critic)
    logits = a @ p.T / temperature
    if same_view_negatives:
        same = a @ a.T / temperature
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        logits = torch.cat([logits, same.masked_fill(eye, float("-inf"))], 1)
    target = torch.arange(len(a), device=a.device)
    return F.cross_entropy(logits, target)


def _critic_inputs(anchor: torch.Tensor, other: torch.Tensor, critic: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose products are the logits: L2-normalised (``cosine``) or as given (``dot``)."""
    if critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
    if critic == "cosine":
        return F.normalize(anchor, dim=-1), F.normalize(other, dim=-1)
    return anchor, other


def info_nce_rows(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
                  same_view_negatives: bool = True, critic: str = "cosine", chunk_size: int = 1024) -> torch.Tensor:
    """:func:`info_nce` up to ``chunk_size`` rows (the ``n x n`` logits at once), :func:`info_nce_chunked` beyond
    (memory ``O(chunk_size x n)``): the same value either way."""
    if len(anchor) <= chunk_size:
        return info_nce(anchor, positive, temperature, same_view_negatives, critic)
    return info_nce_chunked(anchor, positive, temperature, same_view_negatives, chunk_size, critic)


def info_nce_chunked(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
                     same_view_negatives: bool = True, chunk_size: int = 1024, critic: str = "cosine") -> torch.Tensor:
    """:func:`info_nce` computed over ``chunk_size`` anchor rows at a time: memory ``O(chunk x n)``.

    Each chunk's logits ``[chunk, n]`` (and ``[chunk, n]`` same-view) are reduced to their log-sum-exp at
    once, so the ``n x n`` similarity matrix never exists; in training each chunk is recomputed in the
    backward pass (``torch.utils.checkpoint``), so the memory bound holds there too.  The gradient is exact.
    """
    a, p = _critic_inputs(anchor, positive, critic)
    checkpointed = torch.is_grad_enabled() and (a.requires_grad or p.requires_grad) and len(a) > chunk_size
    total = a.new_zeros(())
    for start in range(0, len(a), chunk_size):
        rows = torch.arange(start, min(start + chunk_size, len(a)), device=a.device)
        args = (a, p, rows, temperature, same_view_negatives)
        total = total + (checkpoint(_info_nce_chunk, *args, use_reentrant=False) if checkpointed
                         else _info_nce_chunk(*args))
    return total / len(a)


def _info_nce_chunk(a: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, temperature: float,
                    same_view_negatives: bool) -> torch.Tensor:
    """The summed InfoNCE terms of anchor ``rows`` (normalised inputs)."""
    logits = a[rows] @ p.T / temperature
    if same_view_negatives:
        same = (a[rows] @ a.T / temperature).index_put((torch.arange(len(rows), device=a.device), rows),
                                                       torch.tensor(float("-inf"), device=a.device))
        logits = torch.cat([logits, same], 1)
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(rows), device=a.device), rows]).sum()


def orthogonality(specific: list[torch.Tensor]) -> torch.Tensor:
    """``1/|I| sum_i (h_s,i^a . h_s,i^b)^2`` (MICRO eq. 13), summed over every pair of views a < b."""
    total = specific[0].new_zeros(())
    for a in range(len(specific)):
        for b in range(a + 1, len(specific)):
            total = total + (specific[a] * specific[b]).sum(1).pow(2).mean()
    return total


CONTRASTIVE_ITEMS = ("all", "batch")


def contrastive_items(n_items: int, pos: torch.Tensor, neg: torch.Tensor, mode: str = "all",
                      max_items: int = 0) -> torch.Tensor | None:
    """The items an InfoNCE sums over: all (None), the batch's items, optionally a random subset of them.

    ``mode="all"`` (MICRO eq. 9, SLIF-MR eq. 19) or ``"batch"`` (the positive and negative items of the
    batch); ``max_items > 0`` keeps a uniformly random ``max_items`` of those (global torch RNG, so seeded and
    checkpointed with the run).
    """
    if mode not in CONTRASTIVE_ITEMS:
        raise ValueError(f"mode must be one of {CONTRASTIVE_ITEMS}, got {mode!r}")
    if mode == "all":
        items = None if max_items <= 0 else torch.arange(n_items, device=pos.device)
    else:
        items = torch.unique(torch.cat([pos, neg.reshape(-1)]))
    if items is not None and 0 < max_items < len(items):
        items = items[torch.randperm(len(items), device=items.device)[:max_items]]
    return items


def multiview_info_nce(views: list[torch.Tensor], target: torch.Tensor, temperature: float,
                       items: torch.Tensor | None = None, reduction: str = "mean",
                       chunk_size: int = 1024, critic: str = "cosine") -> torch.Tensor:
    """InfoNCE between each view and a target view over ``items`` (None: all rows), reduced over views.

    ``reduction="mean"`` averages the views' terms (MICRO eq. 9), ``"sum"`` adds them (the official MICRO
    code).  Chunked beyond ``chunk_size`` rows (:func:`info_nce_rows`).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    pick = (lambda x: x) if items is None else (lambda x: x[items])  # noqa: E731
    total = torch.stack([info_nce_rows(pick(v), pick(target), temperature, True, critic, chunk_size)
                         for v in views]).sum()
    return total / len(views) if reduction == "mean" else total


def _target_chunk(a: torch.Tensor, t: torch.Tensor, t_neg: torch.Tensor, rows: torch.Tensor, pool: torch.Tensor,
                  temperature: float, exclude_positive: bool) -> torch.Tensor:
    """Sum over the anchors ``rows`` of ``logsumexp(negatives) - positive`` (one chunk of eq. 19)."""
    positive = (a * t).sum(-1) / temperature
    logits = (a @ t_neg.T / temperature).masked_fill(pool[None, :] == rows[:, None], float("-inf"))
    if not exclude_positive:
        logits = torch.cat([positive[:, None], logits], 1)
    return (torch.logsumexp(logits, 1) - positive).sum()


def info_nce_to_target(anchor: torch.Tensor, target: torch.Tensor, temperature: float,
                       negatives: torch.Tensor | None = None, exclude_positive: bool = True,
                       chunk_size: int = 1024, precision: str = "float32", critic: str = "cosine") -> torch.Tensor:
    """InfoNCE of each ``anchor`` row toward the same row of ``target`` (SLIF-MR eq. 19), mean over rows.

    ``-log exp(cos(a_i, t_i)/tau) / sum_j exp(cos(a_i, t_j)/tau)`` with the negatives ``j`` taken from
    ``target`` only (no same-view negatives).  ``exclude_positive`` (eq. 19 as written, ``j in I \\ {i}``)
    leaves ``j = i`` out of the denominator (a decoupled contrastive loss); False is the usual InfoNCE with the
    positive in the denominator.  ``negatives``: the rows of ``target`` used as negatives for every anchor
    (None: all rows, as written); a sampled row that equals the anchor's own is masked.  The target is used as
    given: pass ``target.detach()`` for the stop-gradient.  ``chunk_size`` anchor rows at a time, so memory
    stays ``O(chunk x n_negatives)``.  With a stop-gradient target (eq. 19's ``sg``) the anchors' gradient is
    formed chunk by chunk in the forward pass (:class:`_FixedTargetInfoNCE`: two matrix products and one
    ``exp`` per chunk); with a target that needs gradient each chunk is recomputed in the backward pass
    (``torch.utils.checkpoint``).  ``critic="dot"`` uses the raw rows instead of their cosine.  ``precision="bfloat16"`` (stop-gradient path only) forms the logits, their
    ``exp`` and the gradient product in bfloat16 (sums and the result in float32): about 2x faster on CPUs with
    AVX512-BF16, at a relative error of about 1e-3 on the loss.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    a, t = _critic_inputs(anchor, target, critic)
    pool = torch.arange(len(t), device=t.device) if negatives is None else negatives
    t_neg = t[pool]
    if torch.is_grad_enabled() and a.requires_grad and not t.requires_grad:
        return _FixedTargetInfoNCE.apply(a, t, t_neg, pool, negatives is None, temperature, exclude_positive,
                                         chunk_size, getattr(torch, precision), critic == "cosine")
    checkpointed = torch.is_grad_enabled() and a.requires_grad and len(a) > chunk_size
    total = a.new_zeros(())
    for start in range(0, len(a), chunk_size):
        rows = torch.arange(start, min(start + chunk_size, len(a)), device=a.device)
        args = (a[rows], t[rows], t_neg, rows, pool, temperature, exclude_positive)
        total = total + (checkpoint(_target_chunk, *args, use_reentrant=False) if checkpointed
                         else _target_chunk(*args))
    return total / max(1, len(a))


PRECISIONS = ("float32", "bfloat16")


class _FixedTargetInfoNCE(torch.autograd.Function):
    """:func:`info_nce_to_target` when only the anchors need gradient (the target is a constant).

    Per chunk of anchors, with ``s_j = a . t_j / tau``: ``E = exp(s - c)`` over the negatives (the anchor's own
    row set to zero when it is among them), ``Z = sum E`` (plus ``exp(s_i - c)`` when the positive is in the
    denominator), loss ``log Z + c - s_i`` and gradient ``dloss/da = (E t_neg / Z - (1 - w_i) t_i) / tau`` with
    ``w_i`` the positive's softmax weight (0 when excluded).  The gradient (``[n, d]``) is kept for the
    backward pass, so no chunk is computed twice.  The shift ``c`` is the bound ``1/tau`` of a cosine logit,
    folded into the product as an extra coordinate (``[a/tau, -c] . [t_j, 1]``), and the row sum ``Z`` is the
    last column of ``E [t_neg | 1]``, so a chunk costs two matrix products and one in-place ``exp`` (no pass
    that converts the ``chunk x n`` weights to float32 in the bfloat16 path); for ``tau < 0.025`` (where
    ``exp(-2/tau)`` could underflow) or a ``dot`` critic (``bounded`` False: no bound) ``c`` is each row's maximum.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, t: torch.Tensor, t_neg: torch.Tensor, pool: torch.Tensor,
                all_negatives: bool, temperature: float, exclude_positive: bool, chunk_size: int,
                dtype: torch.dtype = torch.float32, bounded: bool = True) -> torch.Tensor:
        n = max(1, len(a))
        grad = torch.empty_like(a)
        total = a.new_zeros((), dtype=torch.float64)
        fixed_shift = bounded and 2.0 / temperature <= 80.0
        shift = 1.0 / temperature
        t_sum = torch.cat([t_neg, t_neg.new_ones(len(t_neg), 1)], 1).to(dtype)  # [t_j, 1]: E t and sum E at once
        t_aug = t_sum if fixed_shift else t_neg.to(dtype)                         # [t_j, 1]: the shift folded in
        for start in range(0, len(a), chunk_size):
            rows = torch.arange(start, min(start + chunk_size, len(a)), device=a.device)
            a_c, t_c = a[rows], t[rows]
            positive = (a_c * t_c).sum(-1) / temperature
            if fixed_shift:
                scaled = torch.cat([a_c / temperature, a_c.new_full((len(rows), 1), -shift)], 1)
                logits = scaled.to(dtype) @ t_aug.T
                top = a_c.new_full((len(rows),), shift)
            else:
                logits = (a_c.to(dtype) @ t_aug.T).float().div_(temperature)
                top = logits.max(1).values.clamp_min(torch.finfo(a.dtype).min)
                logits.sub_(top[:, None])
            weights = logits.exp_()
            if all_negatives:  # pool = every row: the anchor's own column is the diagonal of the chunk
                weights[torch.arange(len(rows), device=a.device), rows] = 0.0
            else:
                weights.masked_fill_(pool[None, :] == rows[:, None], 0.0)
            pulled_and_norm = (weights @ t_sum).to(a.dtype)
            own = torch.zeros_like(positive) if exclude_positive else (positive - top).exp()
            norm = pulled_and_norm[:, -1] + own
            total += (norm.log() + top - positive).sum().double()
            pulled = pulled_and_norm[:, :-1] / norm[:, None]
            grad[rows] = (pulled - (1 - own / norm)[:, None] * t_c) / temperature
        ctx.save_for_backward(grad / n)
        return (total / n).to(a.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None, None, None, None, None, None, None, None


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's uniformity ``log mean_{i != j} exp(-t ||f(x_i) - f(x_j)||^2)``, ``f`` = L2 normalisation.

    SLIF-MR's L_intra (eq. 21) in the reading that does what its text says (spread items of one view apart).
    Over all ordered pairs ``i != j`` of the rows given (pass a sample of items); memory ``O(n^2)``.
    """
    f = F.normalize(x, dim=-1)
    if len(f) < 2:
        return f.new_zeros(())
    return torch.pdist(f).pow(2).mul(-t).exp().mean().log()


def mean_squared_distance(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """SLIF-MR eq. 21 as printed: ``-1/|I|^2 sum_{i,j} log exp(-t ||f(x_i) - f(x_j)||^2)``, ``f`` = L2 norm.

    It equals ``t`` times the mean squared distance over all ``|I|^2`` pairs, computed in ``O(n d)`` from
    ``mean_{i,j} ||f_i - f_j||^2 = 2 mean_i ||f_i||^2 - 2 ||mean_i f_i||^2``; minimising it pulls the items
    of a view together (the opposite of what the paper's text describes).
    """
    f = F.normalize(x, dim=-1)
    return t * 2 * (f.pow(2).sum(-1).mean() - f.mean(0).pow(2).sum())
