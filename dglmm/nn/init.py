"""Parameter initialisation the four papers share."""

from __future__ import annotations

import torch
from torch import nn

BIAS_INITS = ("xavier", "zero")


def xavier_embedding(n: int, dim: int) -> nn.Embedding:
    """An ``n x dim`` embedding table with Xavier-uniform init, as all four papers use."""
    emb = nn.Embedding(n, dim)
    nn.init.xavier_uniform_(emb.weight)
    return emb


def init_linear(linear: nn.Linear, bias: str = "zero") -> nn.Linear:
    """Xavier-uniform weight; the bias ``"zero"`` or ``"xavier"``: Xavier-uniform over a ``[1, d_out]`` variable,
    bound ``sqrt(6 / (1 + d_out))``, as NGCF's and KGAT's official code initialise theirs."""
    if bias not in BIAS_INITS:
        raise ValueError(f"bias must be one of {BIAS_INITS}, got {bias!r}")
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        with torch.no_grad():
            if bias == "xavier":
                nn.init.xavier_uniform_(linear.bias.view(1, -1))
            else:
                linear.bias.zero_()
    return linear
