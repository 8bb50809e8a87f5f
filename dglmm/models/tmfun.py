"""TMFUN (Zhou et al., SIGIR'23): attention-guided multi-step fusion of item views.

No public code exists; every reading of the paper is an option (docs/models/tmfun.md).  With the
paper's equation numbers, for modalities ``M`` (Amazon: v, t; TikTok: image, audio):

* **Graphs** (section 2.1).  The user-item graph is the heterograph's ``interact``.  Each modality's frozen
  kNN graph ``S^m`` (cosine top-N on raw features, eq. 1, normalised) is its ``similar_<m>`` relation.  The item
  feature graph is the frozen fusion ``G_M = sum_m lambda_m S^m`` (eq. 4; with two modalities
  ``lambda G_V + (1 - lambda) G_T``), applied as a weighted sum of DGL propagations, never materialised.
* **Convolutions** (section 2.2).  The CF backbone (LightGCN; MF / NGCF for Table 2) gives ``x~u, x~i``;
  ``item_layers`` propagations over ``S^m`` and over ``G_M`` give ``x~^m`` and ``x~^mm`` (the paper's
  ``x~m``).  Their input (``graph_input``) is the projected features ``W_m x^m`` (``G_M``: ``sum_m lambda_m
  W_m x^m``) or the item ID embeddings.
* **Attention** (eqs. 2-3).  ``Q = {i} + M + {mm}``; ``a^q_ui = softmax_q(x~u . x~^q_i / sqrt(d))``,
  ``h_ui = sum_q a^q_ui x~^q_i`` (``attention="user"``) or one learned query for all users (``"item"``).
* **Multi-step fusion** (eqs. 5-7).  ``h^f = sum_m mu_m h^m`` with ``h^m`` the modality views
  (``fusion_input``: graph outputs ``x~^m`` or projections ``W_m x^m``); ``e^m = h_ui + h^f`` (eq. 5);
  ``y^i = x~i + e^m`` (eq. 6); ``y^u = x~u`` (``user_rep="cf"``) or ``x~u`` plus the mean ``h^f`` of the
  user's training items (``"cf+items"``); score ``y^u . y^i`` (eq. 7).
* **Losses** (eqs. 8-11).  ``L = L_BPR + alpha L_mmbpr + beta L_C`` + L2 on the backbone's ego embeddings;
  ``L_mmbpr = sum_m BPR(y^u . h^m_i, y^u . h^m_j)`` (eq. 10); ``L_C = mean_m 1/2 (InfoNCE(h^m, h^a) +
  InfoNCE(h^a, h^m))`` (eq. 8) with ``h^a`` the CF item output ``x~i`` (``cl_anchor="cf"``) or ``h^f``.

Variants (Table 2): ``backbone`` = ``mf`` / ``ngcf`` (TMFUN/MF, TMFUN/NGCF); ``variant``:

==============  =================================================================================
``tmfun``       everything above
``tmfun-mm``    no multimodal feature enters a representation: the item graphs convolve ID embeddings
                (``graph_input`` ignored), ``h^f`` is dropped (``e^m = h_ui``), no ``L_mmbpr``, no ``L_C``;
                the frozen kNN structure (built from features) stays
``tmfun-att``   no attention module: ``h_i = 1/|Q| sum_q x~^q_i`` (uniform weights, the same for all users)
==============  =================================================================================

Full ranking is exact and chunked: ``y_u . y_i = y_u . (x~i + h^f_i) + sum_q a^q_ui (y_u . x~^q_i)``
(:func:`dglmm.nn.view_attention.attended_scores`).
"""

from __future__ import annotations

import dataclasses
import math

import dgl
import torch

from dglmm.data.dataset import Dataset
from dglmm.models.base import BACKBONES, Batch, ModelConfig, Recommender, Representations, Rows, register
from dglmm.nn.attention import weighted_sum
from dglmm.nn.contrastive import Reading, contrastive_options
from dglmm.nn.item_graph import BACKENDS as ITEM_BACKENDS
from dglmm.nn.item_graph import ItemGraph
from dglmm.nn.losses import bpr_loss, info_nce_rows
from dglmm.nn.modality import ModalityInputs
from dglmm.nn.propagation import user_mean
from dglmm.nn.view_attention import LearnedQueryViewAttention, attended_scores, pair_view_attention
from dglmm.options import MAX_LAYERS, IntRange, LogUniform, OptionError, Uniform, option

VARIANTS: dict[str, dict[str, bool]] = {
    "tmfun": dict(features=True, attention=True),
    "tmfun-mm": dict(features=False, attention=True),
    "tmfun-att": dict(features=True, attention=False),
}

#: the variants with the modality branch (where the MMBPR and contrastive terms of eq. 11 act)
_FEATURES = {"variant": tuple(v for v, f in VARIANTS.items() if f["features"])}
#: the variants with the view attention of eqs. 2-3
_ATTENTION = {"variant": tuple(v for v, f in VARIANTS.items() if f["attention"])}


_CL = contrastive_options(
    active_when=_FEATURES,
    weight=Reading(1e-3, "beta of eq. 11 (paper's best on Baby 1e-3; searched over the documented range 1e-4..1e-1)",
                   LogUniform(1e-4, 1e-1)),
    temperature=Reading(0.5, "of MI in eq. 8 (paper: none; MICRO's 0.5; searched over the documented range 0.1-1.0)",
                        Uniform(0.1, 1.0, step=0.1)),
    items=Reading("all", "eq. 8 as written: 'all'"),
    max_items=Reading(1024, "eq. 8 as written is 0: one TikTok epoch 157 s, 140x LightGCN's, against 7x"))


@dataclasses.dataclass
class TMFUNConfig(_CL, ModelConfig):
    variant: str = option("tmfun", "Table 2 variant", choices=tuple(VARIANTS))
    backbone: str = option("lightgcn", "CF model giving x~u, x~i (Table 2: mf, ngcf, lightgcn)", choices=BACKBONES)
    cf_layers: int = option(2, "user-item propagation layers of the backbone (MF ignores it; searched over 1-4, a "
                            "documented range around the paper's 2)", low=0, high=MAX_LAYERS, space=IntRange(1, 4),
                            active_when={"backbone": ("lightgcn", "ngcf")})
    modalities: list[str] | None = option(None, "modalities used (None: every one the graph has)")
    graph_input: str = option("id", "what the item graphs convolve: item 'id' embeddings (as MICRO's and FREEDOM's "
                              "code) or projected 'features' W_m x^m (section 2.2 is silent)", choices=("id", "features"),
                              active_when=_FEATURES, reading=True)
    item_layers: int = option(1, "propagation layers on S^m and G_M", low=1, high=MAX_LAYERS)
    item_backend: str = option("csr", "item graph propagation: 'csr' (torch.sparse, fixed weights, faster) or "
                               "'dgl' (update_all); proven equal in the tests", choices=ITEM_BACKENDS)
    graph_weights: list[float] | None = option(
        None, "lambda_m of eq. 4 per modality, normalised to sum 1 (None: equal)", low=0.0)
    fusion_weights: list[float] | None = option(
        None, "mu_m of h^f (eq. 5) per modality, normalised to sum 1 (None: equal)", low=0.0,
                                                active_when=_FEATURES)
    fusion_input: str = option("graph", "h^m of eqs. 5, 8, 10: modality 'graph' outputs x~^m or 'projected' "
                               "features W_m x^m", choices=("graph", "projected"), active_when=_FEATURES, reading=True)
    cl_anchor: str = option("cf", "h^i of eq. 8: 'cf' item output x~i or the 'fusion' h^f",
                            choices=("cf", "fusion"), active_when=_FEATURES, reading=True)
    attention: str = option("user", "eq. 2 query: 'user' x~u (per interaction) or 'item' (one learned query)",
                            choices=("user", "item"), active_when=_ATTENTION, reading=True)
    user_rep: str = option("cf", "y^u of eqs. 7, 10: 'cf' x~u or 'cf+items' x~u + mean h^f of the user's items",
                           choices=("cf", "cf+items"), active_when=_FEATURES, reading=True)
    mmbpr_weight: float = option(1e-3, "alpha of eq. 11 (paper's best on Baby 1e-3; searched over the documented "
                                 "range 1e-4..1e-1)", low=0.0, space=LogUniform(1e-4, 1e-1),
                                 active_when=_FEATURES)
    cl_same_view_negatives: bool = option(False, "MI of eq. 8 also uses same-view negatives (MICRO eq. 10)",
                                          active_when=_FEATURES)

    def check_options(self, section: str = "model") -> None:
        """Per-modality weights: one per listed modality, with a positive sum."""
        for name in ("graph_weights", "fusion_weights"):
            weights = getattr(self, name)
            if weights is None:
                continue
            if sum(weights) <= 0:
                raise OptionError(f"{section}.{name} needs a positive sum, got {weights}")
            if self.modalities is not None and len(weights) != len(self.modalities):
                raise OptionError(f"{section}.{name} needs one weight per modality of {section}.modalities "
                                  f"({len(self.modalities)}), got {len(weights)}")


def _normalised(weights: list[float] | None, n: int, name: str) -> torch.Tensor:
    """Per-modality weights summing to 1 (equal when None)."""
    if weights is None:
        return torch.full((n,), 1.0 / n)
    if len(weights) != n:
        raise OptionError(f"model.{name} needs one weight per modality used ({n}), got {len(weights)}")
    w = torch.tensor(weights, dtype=torch.float32)
    return w / w.sum()


@register
class TMFUN(Recommender):
    """TMFUN (SIGIR'23): kNN feature graphs, attention-guided multi-step fusion of views, contrastive loss."""

    name = "tmfun"
    Config = TMFUNConfig
    needs_modalities = True
    export_note = ("with attention='user' the score adds sum_q a^q_ui (y_u . x~^q_i), whose attention a^q_ui "
                   "depends on the (user, item) pair (eqs. 2-3), so no pair of vectors reproduces it: the exported "
                   "item vectors are the user-independent part x~i + h^f (eq. 6 without h_ui) and their inner "
                   "product with the user vectors is the score without the attended term; use them to retrieve "
                   "candidates and re-rank those with dglmm recommend")

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: TMFUNConfig) -> None:
        super().__init__(dataset, graph, config)
        self.flags = VARIANTS[config.variant]
        d = config.embedding_dim
        self.scale = math.sqrt(d)
        self.add_backbone(config.backbone, dataset, graph, embedding_dim=d, n_layers=config.cf_layers,
                          reg_weight=config.reg_weight)
        self.graph_input = config.graph_input if self.flags["features"] else "id"
        self.uses_projections = self.flags["features"] and (
            self.graph_input == "features" or config.fusion_input == "projected")
        self.inputs = ModalityInputs(graph, config.modalities, d if self.uses_projections else None,
                                     init="xavier+zero_bias", relations=True)            # W_m x^m
        self.modalities, self.etypes = self.inputs.names, self.inputs.etypes
        n_m = len(self.modalities)
        self.register_buffer("graph_weights", _normalised(config.graph_weights, n_m, "graph_weights"))  # eq. 4
        self.register_buffer("fusion_weights", _normalised(config.fusion_weights, n_m, "fusion_weights"))  # eq. 5
        self.item_graphs = ItemGraph(self.n_items, schedule="frozen", weights=self.graph_weights,
                                     backend=config.item_backend)                          # S^m and G_M
        self.item_query = LearnedQueryViewAttention(d) if config.attention == "item" else None
        self.per_interaction = self.flags["attention"] and config.attention == "user"

    # -- views (sections 2.1-2.2, eq. 4) --------------------------------------------------------------------
    def convolve(self, graph: dgl.DGLGraph, h: torch.Tensor, modality: int | None) -> torch.Tensor:
        """``item_layers`` hops over ``S^m`` (``modality`` index) or over ``G_M = sum_m lambda_m S^m`` (None)."""
        item_graphs = self.item_graphs.follow(graph, self.etypes)
        for _ in range(self.config.item_layers):
            h = item_graphs.propagate(h, modality)      # S^m h, or G_M h = sum_m lambda_m S^m h (eq. 4)
        return h

    def views(self, graph: dgl.DGLGraph) -> tuple[Representations, torch.Tensor, list[torch.Tensor]]:
        """(backbone output, the stacked views ``[x~i, x~^m..., x~^mm]`` ``[V, n, d]``, the ``h^m`` of eq. 5)."""
        cf = self.backbone(graph)
        proj = self.inputs.projected(graph) if self.uses_projections else None  # W_m x^m
        if self.graph_input == "features":
            inputs = proj
            mixed_input = sum(w * p for w, p in zip(self.graph_weights, proj, strict=True))
        else:
            inputs = [self.backbone.item_embedding_table()] * len(self.modalities)
            mixed_input = inputs[0]
        modal = [self.convolve(graph, x, k) for k, x in enumerate(inputs)]
        mixed = self.convolve(graph, mixed_input, None)
        side = proj if self.config.fusion_input == "projected" and proj is not None else modal
        return cf, torch.stack([cf.item, *modal, mixed]), side

    # -- the contract ---------------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:
        """``user = y^u``; ``item`` = the user-independent part of ``y^i`` (``x~i + h^f``, plus ``h_i`` unless the
        attention is per interaction); ``extras``: ``query`` (``x~u``), ``views`` ``[V, n, d]``, ``side``
        ``[|M|, n, d]`` (the ``h^m``), ``fusion`` (``h^f``)."""
        cf, views, side = self.views(graph)
        item = cf.item
        fusion = None
        if self.flags["features"]:
            fusion = sum(w * s for w, s in zip(self.fusion_weights, side, strict=True))        # h^f, eq. 5
            item = item + fusion
        if not self.flags["attention"]:                                                     # TMFUN-att
            item = item + views.mean(0)
        elif self.item_query is not None:                                                   # item-level
            item = item + weighted_sum(self.item_query(views, self.scale), list(views))
        user = cf.user
        if self.config.user_rep == "cf+items" and fusion is not None:
            user = user + user_mean(graph, fusion)
        extras = {"query": cf.user, "views": views, "side": torch.stack(side)}
        if fusion is not None:
            extras["fusion"] = fusion
        return Representations(user, item, extras)

    def pair_score(self, reps: Representations, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``y^u . y^i`` (eq. 7) for aligned (user, item) pairs, the attention per pair (eqs. 2-3)."""
        y_u = reps.user[users]
        score = (y_u * reps.item[items]).sum(-1)
        if self.per_interaction:
            views = reps.extras["views"][:, items]
            h = weighted_sum(pair_view_attention(reps.extras["query"][users], views, self.scale), list(views))
            score = score + (y_u * h).sum(-1)
        return score

    def score(self, reps: Representations, users: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]``, exact: ``y_u . (x~i + h^f) + sum_q a^q_ui (y_u . x~^q_i)``."""
        y_u = reps.user[users]
        scores = y_u @ reps.item.T
        if self.per_interaction:
            value = None if self.config.user_rep == "cf" else y_u
            scores = scores + attended_scores(reps.extras["query"][users], reps.extras["views"], self.scale, value)
        return scores

    def score_is_inner_product(self) -> bool:
        """Only without the per-interaction attention (``variant`` tmfun-att, or ``attention="item"``)."""
        return not self.per_interaction

    def pair_scores(self, reps: Representations, batch: Batch, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        """``y_ui``, ``y_uj`` of eq. 9's BPR, the attention per pair."""
        return self.pair_score(reps, batch.users, batch.pos), self.pair_score(reps, batch.users, batch.neg)

    def model_terms(self, reps: Representations, batch: Batch) -> dict[str, torch.Tensor]:
        """``alpha L_mmbpr + beta L_C`` of eq. 11 (BPR and L2 on the backbone's ego embeddings: the base loss)."""
        users, pos, neg = batch.users, batch.pos, batch.neg
        terms = {}
        if self.flags["features"] and self.config.mmbpr_weight > 0:
            terms["mmbpr"] = self.config.mmbpr_weight * self.mmbpr_loss(reps, users, pos, neg)
        if self.flags["features"] and self.config.cl_weight > 0:
            terms["contrastive"] = self.config.cl_weight * self.contrastive_loss(reps, self.config.rows(
                self.n_items, pos, neg))
        return terms

    def mmbpr_loss(self, reps: Representations, users: torch.Tensor, pos: torch.Tensor,
                   neg: torch.Tensor) -> torch.Tensor:
        """``L_mmbpr`` (eq. 10): a BPR term per modality on ``y^u . h^m``, summed over modalities."""
        y_u, side = reps.user[users], reps.extras["side"]
        return sum(bpr_loss((y_u * h[pos]).sum(-1), (y_u * h[neg]).sum(-1)) for h in side)

    def contrastive_loss(self, reps: Representations, items: torch.Tensor | None = None) -> torch.Tensor:
        """``L_C`` (eq. 8): mean over modalities of the symmetric InfoNCE between ``h^m`` and the anchor."""
        anchor = reps.extras["views"][0] if self.config.cl_anchor == "cf" else reps.extras["fusion"]
        c = self.config
        pick = (lambda x: x) if items is None else (lambda x: x[items])  # noqa: E731
        a = pick(anchor)

        def mi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return info_nce_rows(x, y, c.cl_temperature, c.cl_same_view_negatives, c.cl_critic, c.cl_chunk_size)

        losses = [0.5 * (mi(pick(h), a) + mi(a, pick(h))) for h in reps.extras["side"]]
        return torch.stack(losses).mean()
