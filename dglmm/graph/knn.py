"""Item-item kNN graphs from features: cosine top-k, symmetrisation and normalisation (MICRO eqs. 1-3).

Edges are returned as COO tensors ``(src, dst, weight)`` in the message-passing direction: ``src`` is the
neighbour ``j`` and ``dst`` the item ``i`` whose row of ``S`` holds the entry ``S_ij``, so that
``update_all(fn.u_mul_e('h', 'w', 'm'), fn.sum('m', 'h'))`` computes ``(S H)_i = sum_j S_ij H_j``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from dglmm.options import check_size

Norm = Literal["sym", "rw", "none"]
NORMS: tuple[str, ...] = ("sym", "rw", "none")
EPS = 1e-12


class KnnEdges(NamedTuple):
    """A kNN graph: ``sim`` is the (clamped) cosine ``S_ij``, ``w`` its normalised weight."""

    src: Tensor
    dst: Tensor
    sim: Tensor
    w: Tensor


def check_neighbours(k: int, n: int, key: str, default: int | None = None, what: str = "items") -> None:
    """InputError (one line naming option ``key``) when ``k`` neighbours per node exceed the ``n`` nodes, checked
    against the data before any similarity is computed: :func:`cosine_knn` would cap ``k`` and silently build a
    dense ``n x n`` graph.  The option's ``default`` is exempt (capped on toy data with fewer items)."""
    check_size(key, k, n, what, default)


def _unit_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (no NaN)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(EPS)


@torch.no_grad()
def _topk_indices(xn: Tensor, k: int, keep_self: bool, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` columns of ``xn @ xn.T`` per row, ``chunk_size`` rows at a time (eq. 2)."""
    n = xn.shape[0]
    values, indices = [], []
    for start in range(0, n, chunk_size):
        sim = xn[start:start + chunk_size] @ xn.T
        if not keep_self:
            rows = torch.arange(sim.shape[0], device=xn.device)
            sim[rows, rows + start] = float("-inf")
        top = sim.topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def cosine_knn(x: Tensor, k: int, keep_self: bool = True, chunk_size: int = 1024,
               clamp_negative: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` cosine neighbours of every row of ``x`` (MICRO eqs. 1-2).

    ``S_ij = x_i . x_j / (|x_i| |x_j|)`` (eq. 1), kept for the ``k`` largest ``j`` of each row ``i`` (eq. 2);
    the item itself is a candidate unless ``keep_self`` is False (the LATTICE code keeps it).  Negative
    similarities are clamped to 0 when ``clamp_negative``.  Rows are processed ``chunk_size`` at a time, so the
    memory peak is ``chunk_size x n`` similarities.  ``k`` is capped at the number of candidates.

    Returns ``(src, dst, sim)`` with ``src`` = neighbour ``j``, ``dst`` = item ``i`` (``k`` edges per item,
    grouped by ``dst``, best first).  When ``x`` requires grad, ``sim`` is differentiable w.r.t. ``x`` (the
    neighbour choice is not): the selected entries are recomputed as ``n*k`` dot products, which stores
    ``n*k*d`` values for backward - fine for learned low-dimensional projections (LATTICE).
    """
    if x.dim() != 2:
        raise ValueError(f"features must be [n, d], got shape {tuple(x.shape)}")
    if k < 1 or chunk_size < 1:
        raise ValueError(f"k and chunk_size must be >= 1, got k={k}, chunk_size={chunk_size}")
    n = x.shape[0]
    k = min(k, n if keep_self else n - 1)
    if k <= 0:
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return empty, empty.clone(), x.new_zeros(0)
    xn = _unit_rows(x)
    values, nbr = _topk_indices(xn.detach(), k, keep_self, chunk_size)
    if x.requires_grad and torch.is_grad_enabled():
        values = (xn[nbr] * xn.unsqueeze(1)).sum(-1)
    if clamp_negative:
        values = values.clamp_min(0)
    dst = torch.arange(n, device=x.device).repeat_interleave(k)
    return nbr.reshape(-1), dst, values.reshape(-1)


def normalize_edge_weights(src: Tensor, dst: Tensor, weight: Tensor, n_nodes: int, mode: Norm = "sym") -> Tensor:
    """Normalise the sparse matrix ``S`` (entry ``S[dst, src] = weight``) by its row sums ``d``.

    ``"sym"``: ``D^-1/2 S D^-1/2``, i.e. ``w_ij = S_ij / sqrt(d_i d_j)`` (MICRO eq. 3, as the LATTICE code);
    ``"rw"``: ``D^-1 S``, i.e. ``w_ij = S_ij / d_i``; ``"none"``: ``weight`` unchanged.  ``d_i`` sums the
    weights over the edges entering ``i``.  Differentiable; nodes of zero degree give 0, never NaN.
    """
    if mode == "none":
        return weight
    if mode not in NORMS:
        raise ValueError(f"unknown normalisation {mode!r}; expected one of {NORMS}")
    deg = weight.new_zeros(n_nodes).index_add(0, dst, weight)
    positive = deg > 0
    safe = deg.clamp_min(EPS)
    if mode == "rw":
        inv = torch.where(positive, 1.0 / safe, torch.zeros_like(deg))
        return weight * inv[dst]
    inv_sqrt = torch.where(positive, safe.rsqrt(), torch.zeros_like(deg))
    return weight * inv_sqrt[dst] * inv_sqrt[src]


def symmetrize(src: Tensor, dst: Tensor, w: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``S + S^T`` as a set of edges: every edge plus its reverse, duplicate ``(i, j)`` pairs merged by max.

    Merging by max (not sum) keeps a pair found from both ends at its similarity instead of doubling it, so
    for non-negative ``S`` the result is ``max(S, S^T)``.  Output sorted by ``(dst, src)``; differentiable in
    ``w`` (the max picks which duplicate carries the gradient).
    """
    both_src = torch.cat([src, dst])
    both_dst = torch.cat([dst, src])
    both_w = torch.cat([w, w])
    key, inverse = torch.unique(both_dst * n + both_src, sorted=True, return_inverse=True)
    merged = both_w.new_zeros(key.shape[0]).scatter_reduce(0, inverse, both_w, reduce="amax",
                                                            include_self=False)
    return key % n, key // n, merged


def drop_masked(src: Tensor, dst: Tensor, sim: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """The edges whose two items both have the modality (``mask`` True); all edges when ``mask`` is None."""
    if mask is None:
        return src, dst, sim
    keep = mask[src] & mask[dst]
    return src[keep], dst[keep], sim[keep]


def knn_graph_edges(features: Tensor, k: int, keep_self: bool = True, symmetric: bool = False,
                    norm: Norm = "sym", chunk_size: int = 1024, clamp_negative: bool = True,
                    mask: Tensor | None = None) -> KnnEdges:
    """Cosine top-``k`` graph (eqs. 1-2), optionally symmetrised, with normalised weights (eq. 3).

    ``mask`` (bool per item): items without the modality get no edge, in either direction.
    """
    n = features.shape[0]
    src, dst, sim = drop_masked(*cosine_knn(features, k, keep_self=keep_self, chunk_size=chunk_size,
                                            clamp_negative=clamp_negative), mask)
    if symmetric:
        src, dst, sim = symmetrize(src, dst, sim, n)
    return KnnEdges(src, dst, sim, normalize_edge_weights(src, dst, sim, n, norm))
