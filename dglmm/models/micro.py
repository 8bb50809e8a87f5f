"""MICRO (Zhang et al., TKDE'22) and LATTICE (Zhang et al., MM'21 = ``MICRO w/o fusion``).

The computation, with the paper's equation numbers:

* **Structure mining** (eqs. 1-5).  The frozen kNN graph ``S~^m`` of every modality is the heterograph's
  ``(item, similar_<m>, item)`` relation (cosine top-k on raw features, normalised, eqs. 1-3).  The learned
  graph ``A~^m`` repeats eqs. 1-3 on projected features ``e~^m = W_m e^m + b_m`` (eq. 4) and lives in a
  homogeneous item graph owned by the model, rebuilt on the schedule of ``graph_update``.  The final graph is
  ``A^m = lambda S~^m + (1 - lambda) A~^m`` (eq. 5).
* **Item graph convolution** (eq. 6): ``H^m_(l) = A^m H^m_(l-1)`` from the item ID embeddings, through DGL
  message passing (``fn.u_mul_e`` + ``fn.sum``) over both relations.
* **Contrastive fusion** (eqs. 7-15): modality attention ``alpha^m_i`` (eq. 7), the shared representation
  ``h_c`` (eq. 8), the InfoNCE objective between every modality view and ``h_c`` (eqs. 9-10), the specific
  representations ``h_s^m = h^m - h_c`` (eqs. 11-12) with the soft orthogonality constraint (eq. 13), and the
  second attention over ``[h_c, h_s^1, ...]`` (eqs. 14-15).
* **CF plug-in** (eqs. 16-17): ``h_u`` is the mean of ``h_i`` over the user's training items (a DGL mean
  over ``interacted_by``), and ``y_ui = (x~_u + h_u/|h_u|)^T (x~_i + h_i/|h_i|)`` with ``x~`` from the CF
  backbone (MF, NGCF or LightGCN).
* **Loss** (eqs. 18-19): ``L_BPR + beta_C L_C + beta_S L_S`` plus L2.

Variants (Table 5), selected with ``variant``:

================  =========  ===========  ===========  ========  ==========
variant           structure  graph input  fusion       specific  preference
================  =========  ===========  ===========  ========  ==========
``micro``         graph      ID emb.      contrastive  yes       yes
``cf+feats``      none       -            weights      no        no
``micro/feats``   graph      features     contrastive  yes       yes
``w/o fusion``    graph      ID emb.      weights      no        no          (= LATTICE)
``w/o specific``  graph      ID emb.      contrastive  no        yes
``w/o preference`` graph     ID emb.      contrastive  yes       no
``official``      graph      ID emb.      contrastive  no        no          (the public MICRO code)
================  =========  ===========  ===========  ========  ==========

"weights" is LATTICE's fusion: one item graph mixed from the modalities by the softmax of learnable modal
weights (the learned part normalised after mixing), no attention and no contrastive term.

Readings of the paper that are options (defaults in brackets): ``lambda_coeff`` [0.7, the paper's best;
the official code uses 0.9], ``ui_adjacency`` [``sym`` as LightGCN; the official code uses ``rw_self_loops``],
``cl_modality_reduction`` [``mean`` as eq. 9; the official code sums], ``l2_on`` [``final`` embeddings as
the official code; ``ego`` as LightGCN], ``orth_weight`` [0.01: the paper gives no value],
``graph_update`` [``epoch``: first batch of each epoch, as the official code; ``batch``; ``every_n``],
``trainable_features`` [False: the raw modality features are fixed inputs, as the papers describe them; True:
fine-tuned by Adam like the official code's ``nn.Embedding.from_pretrained(features, freeze=False)``].

The building blocks live in ``dglmm/nn``: the learned graph and its schedule (``item_graph``), relation
propagation and the user mean (``propagation``), the modality attention (``attention``), InfoNCE over views
and the orthogonality term (``losses``).  The learned graphs are module state, saved with the parameters.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import dgl
import torch
import torch.nn.functional as F
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.graph.knn import check_neighbours
from dglmm.graph.schema import similar_etype
from dglmm.models.base import BACKBONES, Batch, ModelConfig, Recommender, Representations, Rows, register
from dglmm.nn.attention import ModalityAttention, weighted_sum
from dglmm.nn.contrastive import Reading, contrastive_options
from dglmm.nn.item_graph import SCHEDULES, ItemGraph, skip_connection
from dglmm.nn.losses import l2_penalty, multiview_info_nce, orthogonality
from dglmm.nn.modality import ModalityInputs
from dglmm.nn.propagation import ADJACENCIES, mixed_relation_propagate, relation_propagate, user_mean
from dglmm.options import MAX_LAYERS, Below, IntRange, LogUniform, Uniform, option

VARIANTS: dict[str, dict[str, object]] = {
    "micro": dict(structure=True, graph_input="id", fusion="contrastive", specific=True, preference=True),
    "cf+feats": dict(structure=False, graph_input="id", fusion="weights", specific=False, preference=False),
    "micro/feats": dict(structure=True, graph_input="features", fusion="contrastive", specific=True,
                        preference=True),
    "w/o fusion": dict(structure=True, graph_input="id", fusion="weights", specific=False, preference=False),
    "w/o specific": dict(structure=True, graph_input="id", fusion="contrastive", specific=False,
                         preference=True),
    "w/o preference": dict(structure=True, graph_input="id", fusion="contrastive", specific=True,
                           preference=False),
    "official": dict(structure=True, graph_input="id", fusion="contrastive", specific=False, preference=False),
}

#: the variants with the contrastive fusion of eqs. 9-10 (where the cl_* options act)
_CONTRASTIVE = {"variant": tuple(v for v, f in VARIANTS.items() if f["fusion"] == "contrastive")}
#: the variants with item graphs (eqs. 1-6), and those whose learned graph A~ exists (lambda < 1, eq. 5)
_STRUCTURE = {"variant": tuple(v for v, f in VARIANTS.items() if f["structure"])}
_LEARNED = {**_STRUCTURE, "lambda_coeff": Below(1.0)}


_CL = contrastive_options(
    active_when=_CONTRASTIVE,
    weight=Reading(0.03, "beta_C of eq. 19 (official code 0.03; searched over the documented range 1e-3..1e-1)",
                   LogUniform(1e-3, 1e-1)),
    temperature=Reading(0.5, "tau of eq. 10 (searched over the documented range 0.1-1.0)", Uniform(0.1, 1.0, step=0.1)),
    items=Reading("all", "eq. 9 and the official code: 'all'"),
    max_items=Reading(1024, "eq. 9 as written is 0: one TikTok epoch 140-280x LightGCN's, 158-494 s, against 6x"))


@dataclasses.dataclass
class MICROConfig(_CL, ModelConfig):
    variant: str = option("micro", "Table 5 variant", choices=VARIANTS)
    backbone: str = option("lightgcn", "CF method the module plugs into (Table 5)", choices=BACKBONES)
    cf_layers: int = option(2, "user-item propagation layers of the backbone (searched over 1-4, a documented "
                            "range around the paper's 2)", low=0, high=MAX_LAYERS, space=IntRange(1, 4),
                            active_when={"backbone": ("lightgcn", "ngcf")})
    ui_adjacency: str = option("sym", "backbone adjacency: 'sym' (LightGCN) or 'rw_self_loops' (official code)",
                               choices=ADJACENCIES, active_when={"backbone": ("lightgcn",)}, reading=True)
    modalities: list[str] | None = option(None, "modalities used (None: all the graph has; Table 6 subsets)")
    item_layers: int = option(1, "item graph convolution layers L (eq. 6)", low=0, high=MAX_LAYERS, active_when=_STRUCTURE)
    knn_k: int = option(10, "neighbours of the learned graph (eq. 2); the frozen one uses graph.knn_k (searched "
                        "over 5-20, a documented range around the paper's 10)", low=1, space=IntRange(5, 20, step=5),
                        active_when=_LEARNED)
    lambda_coeff: float = option(0.7, "skip connection lambda of eq. 5 (paper 0.7, official code 0.9; searched over "
                                 "the documented range 0.1-0.9)", low=0.0, high=1.0,
                                 space=Uniform(0.1, 0.9, step=0.1), active_when=_STRUCTURE)
    graph_update: str = option("epoch", "rebuild the learned graph: 'epoch' (batch 0), 'batch', 'every_n'",
                               choices=SCHEDULES, active_when=_LEARNED, reading=True)
    graph_update_every: int = option(1, "N of graph_update='every_n' (in epochs)", low=1,
                                     active_when={"graph_update": ("every_n",)})
    trainable_features: bool = option(False, "fine-tune the raw modality features (official code) or keep them "
                                      "fixed", renamed_from="train_features", reading=True)
    cl_modality_reduction: str = option("mean", "'mean' over modalities (eq. 9) or 'sum' (official code)",
                                        choices=("mean", "sum"), active_when=_CONTRASTIVE, reading=True)
    orth_weight: float = option(0.01, "beta_S of eq. 19 (the paper gives no value; searched over the documented "
                                "range 1e-3..1e-1)", low=0.0, space=LogUniform(1e-3, 1e-1),
                                active_when={"variant": tuple(v for v, f in VARIANTS.items() if f["specific"])})
    l2_on: str = option("final", "L2 on 'final' batch embeddings (official code) or 'ego' (layer 0)",
                        choices=("final", "ego"), reading=True)


class ItemViews(NamedTuple):
    """Item-side outputs of the multimodal module."""

    fused: torch.Tensor                  # h_i (eq. 15), [n_items, d]
    per_modality: list[torch.Tensor]     # h_i^m (eq. 6 output)
    shared: torch.Tensor | None          # h_c,i (eq. 8)
    specific: list[torch.Tensor]         # h_s,i^m (eqs. 11-12)


@register
class MICRO(Recommender):
    """MICRO (TKDE'22): learned item graphs per modality fused contrastively, on a LightGCN backbone."""

    name = "micro"
    Config = MICROConfig
    needs_modalities = True

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: MICROConfig) -> None:
        super().__init__(dataset, graph, config)
        self.flags = VARIANTS[config.variant]
        check_neighbours(config.knn_k, self.n_items, "model.knn_k", type(config).knn_k)
        d = config.embedding_dim
        self.add_backbone(config.backbone, dataset, graph, embedding_dim=d, reg_weight=config.reg_weight,
                          n_layers=config.cf_layers, adjacency=config.ui_adjacency)
        self.inputs = ModalityInputs(graph, config.modalities, d, config.trainable_features, "xavier",
                                     relations=True)                                     # e^m, W_m of eq. 4
        self.modalities = self.inputs.names
        self.modal_weights = nn.Parameter(torch.full((len(self.modalities),), 1.0 / len(self.modalities)))
        self.attention = ModalityAttention(d)                                            # eq. 7
        self.query_final = nn.Linear(d, 1, bias=False)                                   # q_2 of eq. 14
        names = ["mixed"] if self.flags["fusion"] == "weights" else self.modalities
        self.learned = nn.ModuleDict({name: ItemGraph(self.n_items, config.knn_k, config.graph_update,
                                                      config.graph_update_every, norm="sym") for name in names})

    # -- structure (eqs. 1-6) ---------------------------------------------------------------------------------
    def _refresh_learned(self, graph: dgl.DGLGraph, projected: list[torch.Tensor] | None) -> None:
        """Rebuild the learned graphs (eqs. 1-4) when their schedule or evaluation asks for it, else detach."""
        if self.config.lambda_coeff >= 1.0:
            return
        cache: dict[str, list[torch.Tensor]] = {}

        def inputs() -> list[torch.Tensor]:  # projected once, only if a graph is rebuilt
            if "p" not in cache:
                cache["p"] = projected if projected is not None else self.inputs.projected(graph)
                cache["masks"] = [self.inputs.mask(m) for m in self.modalities]
            return cache["p"]

        if self.flags["fusion"] == "weights":  # LATTICE: per-modality top-k mixed by the modal weights
            self.learned["mixed"].refresh(
                lambda: (inputs(), torch.softmax(self.modal_weights, 0), cache["masks"]))
        else:
            for index, m in enumerate(self.modalities):
                self.learned[m].refresh(lambda index=index: ([inputs()[index]], None, [cache["masks"][index]]))

    def _convolve(self, graph: dgl.DGLGraph, h: torch.Tensor, modality: str | None) -> torch.Tensor:
        """``H_(l) = (lambda S~ + (1 - lambda) A~) H_(l-1)`` (eqs. 5-6), L times."""
        lam = self.config.lambda_coeff
        weights = torch.softmax(self.modal_weights, 0) if modality is None else None
        learned = self.learned["mixed" if modality is None else modality]
        for _ in range(self.config.item_layers):
            if weights is not None:  # LATTICE: sum_m w_m S~^m for the frozen part, one mixed learned graph
                frozen = mixed_relation_propagate(graph, [similar_etype(m) for m in self.modalities], weights, h)
            else:
                frozen = relation_propagate(graph, similar_etype(modality), h)
            h = skip_connection(frozen, learned.propagate(h) if lam < 1.0 else 0.0, lam)
        return h

    # -- fusion (eqs. 7-15) --------------------------------------------------------------------------------------
    def item_views(self, graph: dgl.DGLGraph) -> ItemViews:
        uses_features = not self.flags["structure"] or self.flags["graph_input"] == "features"
        projected = self.inputs.projected(graph) if uses_features else None  # e~^m of eq. 4, when needed
        if not self.flags["structure"]:  # CF+feats: transformed features replace the graph outputs
            weights = torch.softmax(self.modal_weights, 0)
            return ItemViews(weighted_sum(weights.expand(self.n_items, -1), projected), projected, None, [])
        self._refresh_learned(graph, projected)
        if self.flags["graph_input"] == "features":                                  # MICRO/feats
            inputs = projected
        else:
            inputs = [self.backbone.item_embedding_table()] * len(self.modalities)
        if self.flags["fusion"] == "weights":                                         # LATTICE
            x = inputs[0] if projected is None else weighted_sum(
                torch.softmax(self.modal_weights, 0).expand(self.n_items, -1), inputs)
            h = self._convolve(graph, x, None)
            return ItemViews(h, [h], None, [])
        views = [self._convolve(graph, x, m) for x, m in zip(inputs, self.modalities, strict=True)]
        shared = weighted_sum(self.attention(views), views)                          # eqs. 7-8
        if not self.flags["specific"]:
            return ItemViews(shared, views, shared, [])
        specific = [v - shared for v in views]                                        # eqs. 11-12
        candidates = [shared, *specific]
        alpha = torch.softmax(torch.cat([self.query_final(c) for c in candidates], 1), 1)  # eq. 14
        return ItemViews(weighted_sum(alpha, candidates), views, shared, specific)   # eq. 15

    # -- the contract --------------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:
        cf = self.backbone(graph)
        views = self.item_views(graph)
        item = cf.item + F.normalize(views.fused, dim=1)                              # eq. 17, item side
        user = cf.user
        if self.flags["preference"]:
            user = user + F.normalize(user_mean(graph, views.fused), dim=1)           # eqs. 16-17
        return Representations(user, item, {"views": views})

    def l2_term(self, output: Representations, batch: Batch, rows: Rows) -> torch.Tensor | None:
        """L2 on the batch's final embeddings (``l2_on="final"``, official code) or the backbone's ego ones."""
        if self.config.l2_on == "final":
            return l2_penalty(*rows)
        return super().l2_term(output, batch, rows)

    def model_terms(self, output: Representations, batch: Batch) -> dict[str, torch.Tensor]:
        """``beta_C L_C`` and ``beta_S L_S`` of eq. 19 (BPR of eq. 18 and L2 come from the base loss)."""
        views: ItemViews = output.extras["views"]
        terms = {}
        if self.flags["fusion"] == "contrastive" and self.config.cl_weight > 0:
            items = self.config.rows(self.n_items, batch.pos, batch.neg)
            terms["contrastive"] = self.config.cl_weight * self.contrastive_loss(views, items)
        if views.specific and self.config.orth_weight > 0:
            terms["orthogonal"] = self.config.orth_weight * orthogonality(views.specific)  # eq. 13
        return terms

    def contrastive_loss(self, views: ItemViews, items: torch.Tensor | None = None) -> torch.Tensor:
        """``L_C`` of eq. 9: InfoNCE (eq. 10) between each modality view and the shared view.

        Over all items (eq. 9) or, with ``items``, over that subset only (negatives from the subset).
        """
        c = self.config
        return multiview_info_nce(views.per_modality, views.shared, c.cl_temperature, items, c.cl_modality_reduction,
                                  c.cl_chunk_size, c.cl_critic)


@dataclasses.dataclass
class LATTICEConfig(MICROConfig):
    variant: str = option("w/o fusion", "LATTICE is MICRO's 'w/o fusion' variant", choices=VARIANTS)


@register
class LATTICE(MICRO):
    """LATTICE (MM'21): learned item graphs mixed by modal weights; MICRO's ``w/o fusion`` variant."""

    name = "lattice"
    Config = LATTICEConfig
