"""LightGCN (He et al., SIGIR'20): parameter-free propagation over the user-item graph, layer mean."""

from __future__ import annotations

import dataclasses

import dgl

from dglmm.data.dataset import Dataset
from dglmm.models.base import ModelConfig, Representations, register
from dglmm.models.mf import MF
from dglmm.nn.propagation import UserItemPropagation, layer_mean
from dglmm.options import MAX_LAYERS, IntRange, option


@dataclasses.dataclass
class LightGCNConfig(ModelConfig):
    n_layers: int = option(3, "propagation layers K (searched over the 1-4 layers the LightGCN paper compares)",
                           low=0, high=MAX_LAYERS, space=IntRange(1, 4))
    backend: str = option("csr", "'csr' (fast, fixed weights) or 'dgl' (multi_update_all)", choices=("csr", "dgl"))
    adjacency: str = option("sym", "'sym' D^-1/2 A D^-1/2 (paper) or 'rw_self_loops' D^-1 (A + I)",
                            choices=("sym", "rw_self_loops"), reading=True)


@register
class LightGCN(MF):
    """LightGCN (SIGIR'20) over ``interact``/``interacted_by`` (edge weights ``w`` = 1/sqrt(d_u d_i)).

    L2 acts on the layer-0 embeddings of the batch, as in the paper.
    """

    name = "lightgcn"
    Config = LightGCNConfig

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: LightGCNConfig) -> None:
        super().__init__(dataset, graph, config)
        self.propagation = UserItemPropagation(config.backend, config.adjacency)

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        user, item = layer_mean(self.propagation, graph, self.user_emb.weight, self.item_emb.weight,
                                self.config.n_layers)
        return Representations(user, item)
