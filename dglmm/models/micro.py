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
``graph_update`` [``epoch``: first batch of each epoch, as the official code; ``batch``; ``every_n``].
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import dgl
import dgl.function as fn
import torch
import torch.nn.functional as F
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.graph.build import INTERACTED_BY_ETYPE, similar_etype
from dglmm.graph.knn import cosine_knn, normalize_edge_weights
from dglmm.models.base import ModelConfig, Recommender, Representations, make_config, register
from dglmm.models.vbpr import item_modalities
from dglmm.nn.losses import bpr_loss, info_nce, l2_penalty

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
BACKBONES = ("mf", "lightgcn", "ngcf")


def _opt(default: object, help_text: str) -> dataclasses.Field:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class MICROConfig(ModelConfig):
    variant: str = _opt("micro", f"one of {', '.join(VARIANTS)} (Table 5)")
    backbone: str = _opt("lightgcn", "CF method the module plugs into: mf, lightgcn or ngcf (Table 5)")
    cf_layers: int = _opt(2, "user-item propagation layers of the backbone")
    ui_adjacency: str = _opt("sym", "backbone adjacency: 'sym' (LightGCN) or 'rw_self_loops' (official code)")
    modalities: list[str] | None = _opt(None, "modalities used (None: all the graph has; Table 6 subsets)")
    item_layers: int = _opt(1, "item graph convolution layers L (eq. 6)")
    knn_k: int = _opt(10, "neighbours of the learned graph (eq. 2); the frozen one uses graph.knn_k")
    lambda_coeff: float = _opt(0.7, "skip connection lambda of eq. 5 (paper 0.7, official code 0.9)")
    graph_update: str = _opt("epoch", "rebuild the learned graph: 'epoch' (batch 0), 'batch', 'every_n'")
    graph_update_every: int = _opt(1, "N of graph_update='every_n' (in epochs)")
    cl_weight: float = _opt(0.03, "beta_C of eq. 19 (official code 0.03)")
    cl_temperature: float = _opt(0.5, "tau of eq. 10")
    cl_modality_reduction: str = _opt("mean", "'mean' over modalities (eq. 9) or 'sum' (official code)")
    cl_items: str = _opt("all", "InfoNCE over 'all' items every batch (eq. 9, official code) or the 'batch' items")
    cl_max_items: int = _opt(0, "if > 0, InfoNCE over a random subset of at most this many of those items")
    orth_weight: float = _opt(0.01, "beta_S of eq. 19 (the paper gives no value)")
    l2_on: str = _opt("final", "L2 on 'final' batch embeddings (official code) or 'ego' (layer 0)")


class ItemViews(NamedTuple):
    """Item-side outputs of the multimodal module."""

    fused: torch.Tensor                  # h_i (eq. 15), [n_items, d]
    per_modality: list[torch.Tensor]     # h_i^m (eq. 6 output)
    shared: torch.Tensor | None          # h_c,i (eq. 8)
    specific: list[torch.Tensor]         # h_s,i^m (eqs. 11-12)


class ModalityAttention(nn.Module):
    """``alpha^m_i = softmax_m(q^T tanh(W h^m_i + b))`` (eq. 7); parameters shared by all modalities."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, 1, bias=False)

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        logits = torch.cat([self.query(torch.tanh(self.project(v))) for v in views], 1)
        return torch.softmax(logits, dim=1)  # [n, |M|]


def weighted_sum(weights: torch.Tensor, views: list[torch.Tensor]) -> torch.Tensor:
    return sum(weights[:, m:m + 1] * v for m, v in enumerate(views))


def orthogonality(specific: list[torch.Tensor]) -> torch.Tensor:
    """``1/|I| sum_i (h_s,i^a . h_s,i^b)^2`` (eq. 13), summed over every pair of modalities a < b."""
    total = specific[0].new_zeros(())
    for a in range(len(specific)):
        for b in range(a + 1, len(specific)):
            total = total + (specific[a] * specific[b]).sum(1).pow(2).mean()
    return total


class LearnedGraph:
    """The learned kNN item graph ``A~`` as a homogeneous DGL graph with edge weight ``w``.

    Built from projected features (eqs. 1-4); the weights keep their autograd history only for the forward
    pass that built them (the official code reuses the graph detached for the rest of the epoch).
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, n_items: int) -> None:
        self.graph = dgl.graph((src, dst), num_nodes=n_items, device=weight.device)
        self.weight = weight

    def detach(self) -> None:
        self.weight = self.weight.detach()

    def propagate(self, h: torch.Tensor) -> torch.Tensor:
        with self.graph.local_scope():
            self.graph.ndata["h"] = h
            self.graph.edata["w"] = self.weight
            self.graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
            return self.graph.ndata["h"]


def frozen_propagate(graph: dgl.DGLGraph, etype: tuple[str, str, str], h: torch.Tensor) -> torch.Tensor:
    """``S~ H`` over the heterograph's frozen kNN relation."""
    with graph.local_scope():
        graph.nodes["item"].data["h"] = h
        graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h_out"), etype=etype)
        return graph.nodes["item"].data["h_out"]


def user_mean(graph: dgl.DGLGraph, item_h: torch.Tensor) -> torch.Tensor:
    """``h_u = 1/|I_u| sum_{i in I_u} h_i`` (eq. 16) over the training interactions."""
    with graph.local_scope():
        graph.nodes["item"].data["h"] = item_h
        graph.update_all(fn.copy_u("h", "m"), fn.mean("m", "h_u"), etype=INTERACTED_BY_ETYPE)
        return graph.nodes["user"].data["h_u"]


@register
class MICRO(Recommender):
    """MICRO: latent structure mining with contrastive modality fusion (TKDE'22); see the module docstring."""

    name = "micro"
    Config = MICROConfig
    needs_modalities = True

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: MICROConfig) -> None:
        super().__init__(dataset, graph, config)
        self._check(config)
        self.flags = VARIANTS[config.variant]
        feats = item_modalities(graph, config.modalities)
        self.modalities = list(feats)
        for m in self.modalities:
            if similar_etype(m) not in graph.canonical_etypes:
                raise ValueError(f"the graph has no {similar_etype(m)[1]} relation for modality {m!r}")
        d = config.embedding_dim
        self.backbone = self._make_backbone(dataset, graph, config)
        self.projections = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in feats.items()})  # eq. 4
        for lin in self.projections.values():
            nn.init.xavier_uniform_(lin.weight)
        self.modal_weights = nn.Parameter(torch.full((len(feats),), 1.0 / len(feats)))  # LATTICE fusion
        self.attention = ModalityAttention(d)                                            # eq. 7
        self.query_final = nn.Linear(d, 1, bias=False)                                   # q_2 of eq. 14
        self._learned: dict[str, LearnedGraph] = {}
        self._epoch = 0
        self._rebuild = True

    @staticmethod
    def _check(config: MICROConfig) -> None:
        choices = {"variant": VARIANTS, "backbone": BACKBONES, "graph_update": ("epoch", "batch", "every_n"),
                   "cl_items": ("all", "batch"),
                   "cl_modality_reduction": ("mean", "sum"), "l2_on": ("final", "ego")}
        for key, allowed in choices.items():
            if getattr(config, key) not in allowed:
                raise ValueError(f"model.{key} must be one of {', '.join(allowed)}, got {getattr(config, key)!r}")
        if not 0.0 <= config.lambda_coeff <= 1.0:
            raise ValueError(f"model.lambda_coeff must be in [0, 1], got {config.lambda_coeff}")

    @staticmethod
    def _make_backbone(dataset: Dataset, graph: dgl.DGLGraph, config: MICROConfig) -> Recommender:
        from dglmm.models import REGISTRY

        cls = REGISTRY[config.backbone]
        options = {"embedding_dim": config.embedding_dim, "reg_weight": config.reg_weight}
        if config.backbone != "mf":
            options["n_layers"] = config.cf_layers
        if config.backbone == "lightgcn":
            options["adjacency"] = config.ui_adjacency
        if config.backbone == "ngcf":
            options["layer_combination"] = "mean"  # h_i is d-dimensional, so the backbone output must be too
        return cls(dataset, graph, make_config(cls, options))

    # -- hooks: the learned-graph schedule ------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        self._epoch = epoch
        return graph

    def on_batch_start(self, batch_index: int) -> None:
        mode = self.config.graph_update
        if mode == "batch":
            self._rebuild = True
        elif batch_index == 0:
            every = self.config.graph_update_every if mode == "every_n" else 1
            self._rebuild = self._rebuild or self._epoch % every == 0
        else:
            self._rebuild = False

    # -- structure (eqs. 1-6) ---------------------------------------------------------------------------------
    def projected_features(self, graph: dgl.DGLGraph) -> list[torch.Tensor]:
        """``e~^m = W_m e^m + b_m`` (eq. 4) for every modality."""
        feats = item_modalities(graph, self.modalities)
        return [self.projections[m](f.to(self.modal_weights.dtype)) for m, f in feats.items()]

    def _build_learned(self, projected: list[torch.Tensor]) -> None:
        """Eqs. 1-3 on the projected features: per modality (MICRO) or mixed by modal weights (LATTICE)."""
        k, n = self.config.knn_k, self.n_items
        edges = [cosine_knn(p, k) for p in projected]
        if self.flags["fusion"] == "weights":
            weights = torch.softmax(self.modal_weights, 0)
            src = torch.cat([e[0] for e in edges])
            dst = torch.cat([e[1] for e in edges])
            sim = torch.cat([weights[m] * e[2] for m, e in enumerate(edges)])
            self._learned = {"mixed": LearnedGraph(src, dst, normalize_edge_weights(src, dst, sim, n), n)}
        else:
            self._learned = {m: LearnedGraph(s, d, normalize_edge_weights(s, d, w, n), n)
                             for m, (s, d, w) in zip(self.modalities, edges, strict=True)}

    def _refresh_learned(self, graph: dgl.DGLGraph, projected: list[torch.Tensor] | None) -> None:
        """Rebuild the learned graph when the schedule (or evaluation) asks for it, else detach it."""
        rebuild = self._rebuild or not self.training or not self._learned
        if rebuild and self.config.lambda_coeff < 1.0:
            self._build_learned(projected if projected is not None else self.projected_features(graph))
            self._rebuild = False
        else:
            for learned in self._learned.values():
                learned.detach()

    def _convolve(self, graph: dgl.DGLGraph, h: torch.Tensor, modality: str | None) -> torch.Tensor:
        """``H_(l) = (lambda S~ + (1 - lambda) A~) H_(l-1)`` (eqs. 5-6), L times."""
        lam = self.config.lambda_coeff
        weights = torch.softmax(self.modal_weights, 0) if modality is None else None
        for _ in range(self.config.item_layers):
            if weights is not None:  # LATTICE: sum_m w_m S~^m for the frozen part, one mixed learned graph
                frozen = sum(weights[i] * frozen_propagate(graph, similar_etype(m), h)
                             for i, m in enumerate(self.modalities))
                learned = self._learned["mixed"].propagate(h) if lam < 1.0 else 0.0
            else:
                frozen = frozen_propagate(graph, similar_etype(modality), h)
                learned = self._learned[modality].propagate(h) if lam < 1.0 else 0.0
            h = lam * frozen + (1.0 - lam) * learned
        return h

    # -- fusion (eqs. 7-15) --------------------------------------------------------------------------------------
    def item_views(self, graph: dgl.DGLGraph) -> ItemViews:
        uses_features = not self.flags["structure"] or self.flags["graph_input"] == "features"
        projected = self.projected_features(graph) if uses_features else None  # only computed when needed
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
    def _representations(self, graph: dgl.DGLGraph) -> tuple[Representations, ItemViews]:
        cf = self.backbone(graph)
        views = self.item_views(graph)
        item = cf.item + F.normalize(views.fused, dim=1)                              # eq. 17, item side
        user = cf.user
        if self.flags["preference"]:
            user = user + F.normalize(user_mean(graph, views.fused), dim=1)           # eqs. 16-17
        return Representations(user, item), views

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        return self._representations(graph)[0]

    def loss(self, graph: dgl.DGLGraph, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor) -> dict[str, torch.Tensor]:
        reps, views = self._representations(graph)
        u, i, j = reps.user[users], reps.item[pos], reps.item[neg]
        terms = {"bpr": bpr_loss((u * i).sum(-1), (u * j).sum(-1))}                  # eq. 18
        if self.config.reg_weight > 0:
            ego = (u, i, j) if self.config.l2_on == "final" else self.backbone.ego_embeddings(users, pos, neg)
            terms["l2"] = self.config.reg_weight * l2_penalty(*ego)
        if self.flags["fusion"] == "contrastive" and self.config.cl_weight > 0:
            terms["contrastive"] = self.config.cl_weight * self.contrastive_loss(views, self._contrastive_items(pos, neg))
        if views.specific and self.config.orth_weight > 0:
            terms["orthogonal"] = self.config.orth_weight * orthogonality(views.specific)  # eq. 13
        return terms

    def _contrastive_items(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor | None:
        """The items of eq. 9's sum: all (None), the batch's items, optionally capped by random sampling."""
        if self.config.cl_items == "all":
            items = None if self.config.cl_max_items <= 0 else torch.arange(self.n_items, device=pos.device)
        else:
            items = torch.unique(torch.cat([pos, neg.reshape(-1)]))
        if items is not None and 0 < self.config.cl_max_items < len(items):
            items = items[torch.randperm(len(items), device=items.device)[: self.config.cl_max_items]]
        return items

    def contrastive_loss(self, views: ItemViews, items: torch.Tensor | None = None) -> torch.Tensor:
        """``L_C`` of eq. 9: InfoNCE (eq. 10) between each modality view and the shared view.

        Over all items (eq. 9) or, with ``items``, over that subset only (negatives from the subset).
        """
        pick = (lambda x: x) if items is None else (lambda x: x[items])  # noqa: E731
        losses = [info_nce(pick(v), pick(views.shared), self.config.cl_temperature) for v in views.per_modality]
        total = torch.stack(losses).sum()
        return total / len(losses) if self.config.cl_modality_reduction == "mean" else total


@dataclasses.dataclass
class LATTICEConfig(MICROConfig):
    variant: str = _opt("w/o fusion", "LATTICE is MICRO's 'w/o fusion' variant")


@register
class LATTICE(MICRO):
    """LATTICE (MM'21): learned item graphs mixed by modal weights; MICRO's ``w/o fusion`` variant."""

    name = "lattice"
    Config = LATTICEConfig
