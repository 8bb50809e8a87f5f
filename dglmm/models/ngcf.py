"""NGCF (Wang et al., SIGIR'19): graph convolution with feature transforms and bi-interaction messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import dgl
import torch
import torch.nn.functional as F
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.models.base import ModelConfig, Representations, register
from dglmm.models.mf import MF
from dglmm.nn.init import BIAS_INITS, init_linear
from dglmm.nn.propagation import UserItemPropagation
from dglmm.options import MAX_LAYERS, IntRange, Uniform, option


@dataclasses.dataclass
class NGCFConfig(ModelConfig):
    n_layers: int = option(3, "embedding propagation layers L (searched over the paper's 1-4, sec. 4.4)", low=0, high=MAX_LAYERS,
                           space=IntRange(1, 4))
    message_dropout: float = option(0.1, "dropout on each layer output (searched over the paper's grid "
                                    "{0.0, 0.1, ..., 0.8})", low=0.0, high=1.0, space=Uniform(0.0, 0.8, step=0.1))
    normalize_layers: bool = option(True, "L2-normalise each layer output before concatenation (official code)",
                                    reading=True)
    backend: str = option("csr", "'csr' or 'dgl' propagation", choices=("csr", "dgl"))
    layer_combination: str = option("concat", "'concat' the layer outputs (paper) or 'mean' (d-dimensional)",
                                    choices=("concat", "mean"))
    bias_init: str = option("zero", "biases of W1, W2: 'zero' (the paper is silent) or 'xavier' over [1, d] "
                                    "(the official code's b_gc/b_bi)", choices=BIAS_INITS, reading=True)


class NGCFLayer(nn.Module):
    """``E' = LeakyReLU((L + I) E W1 + (L E) * E W2)`` (NGCF eq. 7, matrix form)."""

    def __init__(self, dim: int, bias_init: str = "zero") -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)
        for lin in (self.w1, self.w2):
            init_linear(lin, bias_init)

    def forward(self, ego: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.w1(side + ego) + self.w2(side * ego), negative_slope=0.2)


@register
class NGCF(MF):
    """NGCF (SIGIR'19): the layer-0..L embeddings are concatenated (dimension d * (L+1)).

    ``layer_combination='mean'`` averages them instead (used when NGCF is MICRO's backbone).
    """

    name = "ngcf"
    Config = NGCFConfig

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: NGCFConfig) -> None:
        super().__init__(dataset, graph, config)
        self.layers = nn.ModuleList(NGCFLayer(config.embedding_dim, config.bias_init) for _ in range(config.n_layers))
        self.propagation = UserItemPropagation(config.backend)
        self.dropout = nn.Dropout(config.message_dropout)

    @classmethod
    def backbone_options(cls, **settings: Any) -> dict[str, Any]:
        """As a backbone the layers are averaged, so the output stays d-dimensional like the item views."""
        return {**super().backbone_options(**settings), "layer_combination": "mean"}

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        user, item = self.user_emb.weight, self.item_emb.weight
        users, items = [user], [item]
        hop = self.propagation.bind(graph)
        for layer in self.layers:
            side_user, side_item = hop(user, item)
            user = self.dropout(layer(user, side_user))
            item = self.dropout(layer(item, side_item))
            out_u, out_i = (F.normalize(user, dim=1), F.normalize(item, dim=1)) \
                if self.config.normalize_layers else (user, item)
            users.append(out_u)
            items.append(out_i)
        if self.config.layer_combination == "mean":
            return Representations(torch.stack(users).mean(0), torch.stack(items).mean(0))
        return Representations(torch.cat(users, 1), torch.cat(items, 1))
