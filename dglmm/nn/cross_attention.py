"""Cross-attention over many tokens without an ``N x N`` tensor (CAmgr eqs. 15-23).

:func:`chunked_attention` computes ``softmax(Q K^T / sqrt(d_k)) V`` one block of ``chunk_size`` query rows at a
time, so the largest intermediate is ``chunk_size x n_keys``.  Under autograd every block is wrapped in
:func:`torch.utils.checkpoint.checkpoint`: the forward keeps only the block's inputs and the backward recomputes
the block's attention, so the memory held for backward is O(N d), never O(N^2).

:class:`CrossAttention` projects the query modality to ``Q`` and the key/value modality to ``K``, ``V`` (eqs.
15-17) and returns the common part ``C = softmax(QK^T/sqrt(d_k)) V`` (eq. 18, read as the attention output:
"Linear(CA)" of an ``N x N`` matrix cannot be meant literally) and the distinct part ``V - C`` (eq. 22).
With ``axis="channels"`` the paper's own layout is read literally: ``Q, K, V`` are ``d x N`` (columns are nodes,
as ``H_u in R^{d x |U|}`` of section 3.1), so ``Q K^T`` is a ``d x d`` attention over channels, summed over all
``N`` nodes, and ``CA V`` is ``d x N``: each node's values mixed across channels, O(N d^2) (:func:`channel_attention`).
:class:`ResidualMLP` is the post-attention branch ``R = Linear(x) + Q``, ``MLP(LN(R)) + R`` (eqs. 19-20, 22-23).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    return torch.softmax(q @ k.T * scale, dim=-1) @ v


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk_size: int = 1024,
                      scale: float | None = None) -> Tensor:
    """``softmax(q k^T * scale) v`` computed ``chunk_size`` query rows at a time (``scale`` = 1/sqrt(d_k)).

    ``q``: ``[n_q, d_k]``, ``k``: ``[n_k, d_k]``, ``v``: ``[n_k, d_v]``; returns ``[n_q, d_v]``.  Peak memory
    ``chunk_size x n_k`` scores; with gradients, each chunk is recomputed in backward (checkpointing).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    outputs = []
    for start in range(0, q.shape[0], chunk_size):
        block = q[start:start + chunk_size]
        if grad:
            outputs.append(checkpoint(_attend, block, k, v, scale, use_reentrant=False))
        else:
            outputs.append(_attend(block, k, v, scale))
    return torch.cat(outputs) if outputs else v.new_zeros(0, v.shape[-1])


def channel_attention(q: Tensor, k: Tensor, v: Tensor, rows: Tensor | None = None,
                      scale: float | None = None) -> Tensor:
    """``(softmax(Q K^T * scale) V)^T`` with node-major ``q, k, v: [N, d]`` (the paper's ``Q = q^T``, ``d x N``).

    The ``d x d`` attention ``softmax_j(sum_n q[n, c] k[n, j] * scale)`` is taken over all ``N`` rows; the output
    ``[n, c] = sum_j A[c, j] v[n, j]`` is returned for ``rows`` (all when None).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    attention = torch.softmax(q.T @ k * scale, dim=-1)
    return (v if rows is None else v[rows]) @ attention.T


class CrossAttention(nn.Module):
    """``Q = Linear_Q(x_q)``, ``K = Linear_K(x_kv)``, ``V = Linear_V(x_kv)`` (eqs. 15-17); common and distinct parts.

    ``forward(x_q, x_kv, queries, keys)`` takes token features of the same ``N`` tokens in two modalities;
    ``queries`` / ``keys`` optionally index the tokens that ask / are attended to (None: all).  Returns
    ``(common, distinct, Q)`` for the query tokens: ``common = softmax(Q K^T / sqrt(d_k)) V`` (eqs. 18, 21),
    ``distinct = V_q - common`` with ``V_q`` the value of the query token itself (eq. 22).
    ``axis``: ``"nodes"`` (an ``N x N`` attention over tokens, chunked) or ``"channels"`` (``d x d``, see the module).
    """

    def __init__(self, dim: int, chunk_size: int = 1024, axis: str = "nodes") -> None:
        super().__init__()
        if axis not in ("nodes", "channels"):
            raise ValueError(f"attention axis must be 'nodes' or 'channels', not {axis!r}")
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.chunk_size = chunk_size
        self.axis = axis

    def forward(self, x_q: Tensor, x_kv: Tensor, queries: Tensor | None = None,
                keys: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if self.axis == "channels":  # the d x d attention needs every node; ``keys`` does not apply
            q, v = self.query(x_q), self.value(x_kv)
            common = channel_attention(q, self.key(x_kv), v, queries)
            if queries is not None:
                q, v = q[queries], v[queries]
            return common, v - common, q
        xq = x_q if queries is None else x_q[queries]
        q = self.query(xq)
        kv = x_kv if keys is None else x_kv[keys]
        common = chunked_attention(q, self.key(kv), self.value(kv), self.chunk_size)
        v_self = self.value(x_kv if queries is None else x_kv[queries])
        return common, v_self - common, q


class ResidualMLP(nn.Module):
    """``R = Linear(x) + Q``; ``H = MLP(LN(R)) + R`` (CAmgr eqs. 19-20 and 22-23); MLP = Linear-GELU-Linear.

    ``zero_init``: the MLP's last layer starts at zero, so ``H = R`` at initialisation (the residual-branch
    initialisation of pre-norm transformers); otherwise PyTorch's default initialisation.
    """

    def __init__(self, dim: int, hidden: int, zero_init: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor, q: Tensor) -> Tensor:
        r = self.linear(x) + q
        return self.mlp(self.norm(r)) + r
