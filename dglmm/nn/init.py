"""Parameter initialisation the four papers share."""

from __future__ import annotations

from torch import nn


def xavier_embedding(n: int, dim: int) -> nn.Embedding:
    """An ``n x dim`` embedding table with Xavier-uniform init, as all four papers use."""
    emb = nn.Embedding(n, dim)
    nn.init.xavier_uniform_(emb.weight)
    return emb
