"""MF-BPR (Rendle et al., UAI'09): ID embeddings scored by inner product, trained with BPR."""

from __future__ import annotations

import dgl
import torch

from dglmm.data.dataset import Dataset
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, register
from dglmm.nn.init import xavier_embedding


@register
class MF(Recommender):
    """MF-BPR (UAI'09): ``y_ui = e_u . e_i``; L2 on the batch embeddings."""

    name = "mf"

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: ModelConfig) -> None:
        super().__init__(dataset, graph, config)
        self.user_emb = xavier_embedding(self.n_users, config.embedding_dim)
        self.item_emb = xavier_embedding(self.n_items, config.embedding_dim)

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        return Representations(self.user_emb.weight, self.item_emb.weight)

    def user_embedding_table(self) -> torch.Tensor:
        """The user ID embeddings (layer 0)."""
        return self.user_emb.weight

    def item_embedding_table(self) -> torch.Tensor:
        """The item ID embeddings (layer 0), e.g. the input of MICRO's item graph convolutions."""
        return self.item_emb.weight

    def ego_embeddings(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        return self.user_emb(batch.users), self.item_emb(batch.pos), self.item_emb(batch.neg)
