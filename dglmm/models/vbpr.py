"""VBPR (He & McAuley, AAAI'16): BPR-MF plus a visual (here: all-modality) content factor."""

from __future__ import annotations

import dataclasses

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.graph.features import item_features
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, register
from dglmm.nn.init import xavier_embedding
from dglmm.nn.losses import l2_penalty
from dglmm.options import option


@dataclasses.dataclass
class VBPRConfig(ModelConfig):
    modalities: list[str] | None = option(None, "modalities to concatenate (None: every one the graph has)")
    content_bias: bool = option(True, "keep the content bias beta'^T f_i of the VBPR paper")
    content_reg: bool = option(True, "L2 also on the batch items' content vectors E f_i (MMRec's VBPR); false: "
                                     "E and beta' unregularised, as the VBPR authors train it", reading=True)


@register
class VBPR(Recommender):
    """VBPR (AAAI'16): ``y_ui = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i`` (eq. 2).

    ``f_i`` is the concatenation of all modality features (as MICRO's baseline set-up does).  The global
    offset and the user bias do not change a user's ranking and cancel in BPR, so they are left out.  The
    score is written as an inner product of ``[gamma_u, theta_u, 1, 1]`` and ``[gamma_i, E f_i, beta_i,
    beta' f_i]`` so the shared full-ranking code applies.

    L2 (``content_reg``, a reading): by default the batch's projected content vectors ``E f_i`` are regularised
    with the ID factors, as MMRec's VBPR (the baseline the multimodal papers report) does; ``false`` leaves ``E``
    and ``beta'`` unregularised, as the VBPR authors train them.  On unnormalised features (TikTok's image
    vectors have norm ~33) the unregularised projection ranks below MF (``docs/models/vbpr.md``).
    """

    name = "vbpr"
    uses_every_parameter = True
    Config = VBPRConfig
    needs_modalities = True

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: VBPRConfig) -> None:
        super().__init__(dataset, graph, config)
        d = config.embedding_dim
        feat_dim = sum(f.shape[1] for f in item_features(graph, config.modalities).values())
        self.gamma_user = xavier_embedding(self.n_users, d)
        self.theta_user = xavier_embedding(self.n_users, d)
        self.gamma_item = xavier_embedding(self.n_items, d)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.embed = nn.Linear(feat_dim, d, bias=False)
        nn.init.xavier_uniform_(self.embed.weight)
        self.content_bias = nn.Parameter(torch.zeros(feat_dim)) if config.content_bias else None
        self._feature_cache: tuple[tuple, torch.Tensor] | None = None

    def _features(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """``f_i`` for all items, concatenated once per set of feature tensors (not once per batch).

        The cache key is the feature tensors' storage, shape and in-place version counter: a new or modified
        feature tensor gives a new key, whatever graph object carries it.
        """
        feats = list(item_features(graph, self.config.modalities).values())
        key = tuple((f.data_ptr(), tuple(f.shape), f._version, str(f.device)) for f in feats)
        if self._feature_cache is None or self._feature_cache[0] != key:
            self._feature_cache = (key, torch.cat([f.to(self.embed.weight.dtype) for f in feats], 1))
        return self._feature_cache[1]

    def _user_vectors(self, users: torch.Tensor | None = None) -> torch.Tensor:
        gamma = self.gamma_user.weight if users is None else self.gamma_user(users)
        theta = self.theta_user.weight if users is None else self.theta_user(users)
        return torch.cat([gamma, theta, torch.ones(len(gamma), 2, device=gamma.device)], 1)

    def _item_vectors(self, feats: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        f = feats if items is None else feats[items]
        gamma = self.gamma_item.weight if items is None else self.gamma_item(items)
        bias = self.item_bias if items is None else self.item_bias[items]
        content_bias = f @ self.content_bias if self.content_bias is not None else torch.zeros_like(bias)
        return torch.cat([gamma, self.embed(f), bias[:, None], content_bias[:, None]], 1)

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        return Representations(self._user_vectors(), self._item_vectors(self._features(graph)))

    def training_forward(self, graph: dgl.DGLGraph, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Only the batch's rows: the features of the batch's items are projected, not all items'."""
        feats = self._features(graph)
        return (self._user_vectors(batch.users), self._item_vectors(feats, batch.pos),
                self._item_vectors(feats, batch.neg))

    def batch_rows(self, output: tuple[torch.Tensor, ...], batch: Batch) -> tuple[torch.Tensor, ...]:
        return output

    def ego_embeddings(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        users, pos, neg = batch.users, batch.pos, batch.neg
        return (self.gamma_user(users), self.theta_user(users), self.gamma_item(pos), self.gamma_item(neg),
                self.item_bias[pos, None], self.item_bias[neg, None])

    def l2_term(self, output: tuple[torch.Tensor, ...], batch: Batch, rows: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:
        """L2 of the batch's ID factors and item biases; with ``content_reg`` also of its items' projected
        content vectors ``E f_i`` (columns ``d..2d`` of the item rows, :meth:`_item_vectors`)."""
        ego = self.ego_embeddings(batch)
        if self.config.content_reg:
            d = self.config.embedding_dim
            ego = (*ego, rows[1][:, d:2 * d], rows[2][:, d:2 * d])
        return l2_penalty(*ego)
