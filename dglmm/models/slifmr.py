"""SLIF-MR (Guo et al., "Self-loop Iterative Fusion of Heterogeneous Auxiliary Information for Multimodal
Recommendation"): interaction graph, item feature graph and knowledge graph, fused per item, fed back as a
``correlate`` item-item relation every few epochs.

The computation, with the paper's equation numbers:

* **Item feature graph** (eqs. 2-5): the ``similar_<m>`` relations of the heterograph are ``S^m`` (cosine
  top-k on raw features, ``D^-1/2 S D^-1/2``); ``S = sum_m alpha_m S^m`` with learnable ``alpha``
  (``alpha_param``: softmax of logits [default] or raw weights), through ``mixed_relation_propagate``.
* **Degree-sensitive pruning** (eq. 6, ``dglmm.graph.ops``): a share ``prune_ratio`` of the training
  interactions (user-item pairs, both directions together) and of the KG triples (both directions together)
  is dropped, keep probability proportional to ``1/sqrt(d_m d_n)``; the interaction weights are renormalised
  on the pruned graph (FREEDOM's code).  ``prune_schedule``: ``epoch`` resamples at every epoch start,
  ``once`` samples one pruned graph for the whole run, ``none`` disables pruning.  The pruned graphs are
  never stored: they are a deterministic function of ``(prune_seed, epoch)`` (a private ``torch.Generator``),
  so resume and evaluation are exact.  **Evaluation uses the unpruned graphs**: the paper does not say;
  FREEDOM, whose pruning it adopts, prunes for training only.
* **Interaction view** (eqs. 7-8): LightGCN hops on the (pruned) interaction graph plus the ``correlate``
  block ``G^n`` in the item-item position of ``A^n`` (eq. 18), ``x_bar = mean_{l=1..L_b} x^l + x^0``.
* **Feature view** (eq. 9): ``x_tilde^l = S x_tilde^(l-1)`` with ``j != i`` (``mm_exclude_self``: the kNN
  graphs keep the item itself, eq. 9 sums over ``j != i``), ``x_tilde = mean_{l=1..L_m} x^l + x^0``;
  ``x_tilde^0`` is the item ID embedding (``mm_input="id"``, as LATTICE/FREEDOM) or the projected raw
  features (``"features"``, averaged over the modalities an item has: an item without a modality's features
  gets no kNN edges in it and no projection term from it).  ``S^n = [S^(n-1) | G^n]`` (eq. 18): ``correlate`` is one more relation of the
  mix with its own ``alpha``.
* **KG view** (eqs. 10-13): ``knowledge_graph(graph, ..., extra=(correlate,))`` (items, entities, KG
  relations and their reverses, ``correlate`` as one more relation; ``G_k^n = [G_k^(n-1) | G^n]``), the
  attention ``(W_r x_t)^T tanh(W_r x_h + x_r)`` softmax-normalised over each head's triples
  (``RelationAttention``, one pass over all relations), ``x_hat^l = sum alpha x_t^(l-1)``,
  ``x_hat = mean_{l=0..L_k} x^l``.  ``kg_projection``: ``W_r x`` once per distinct (node, relation) pair in
  relation blocks (``FastRelationAttention``, same values) or per edge with ``gather_mm``.  ``kg_attention_update``: the scores are recomputed with gradient in every
  forward (``batch``, the literal reading) or once per epoch without gradient (``epoch``, KGAT's schedule;
  ``W_r`` and ``x_r`` then keep their initial values, SLIF-MR having no TransR loss) with CSR hops: the KG
  scores are a large share of a batch's cost at Amazon-Book size (``docs/performance.md``).  ``kg_attention``: scores from layer-0 embeddings once per forward
  (``layer0``, KGAT's) or from each layer's input (``per_layer``); ``kg_item_embedding``: the items' KG
  embedding is their ID embedding (``shared``) or a separate table (``separate``).
* **AILF** (eqs. 14-15): ``alpha_i = softmax((W [x_bar | x_tilde | x_hat] + b) / sqrt(d))``,
  ``x_i = sum alpha_i^v x^v_i``.  ``aggregator`` (Fig. 5): ``ailf``, ``concat`` (concatenation then a
  linear map back to ``d`` so that users, which have one view, can score), ``sum``, ``attention`` (the shared
  view attention ``q^T tanh(W h + b)``, MICRO/TMFUN).  Users are ``x_bar_u``; ``y_ui = x_bar_u . x_i``.
* **SGE** (eqs. 16-18, ``on_epoch_end``): cosine top-``sge_top_n`` over the fused ``x_i`` (evaluation-mode
  forward, unpruned graphs), negative cosines clamped to 0, the item itself excluded (``sge_keep_self``),
  ``D^-1/2 G D^-1/2``; rebuilt after the first epoch and every ``graph_update_every`` epochs after; stored in an
  ``AddedRelation(("item", "correlate", "item"))`` (module state: checkpoints, ``best.pt``, evaluate).
  ``sge_mode``: ``replace`` (``G^n`` replaces ``G^(n-1)``) or ``keep`` (``[G^(n-1) | G^n]`` read as the
  average of the last two graphs on the union of their edges: the literal concatenation would grow the
  relation every epoch).
* **L_inter** (eqs. 19-20): InfoNCE of each view toward ``sg(x)``, negatives from ``sg(x)`` only, cosine
  critic, mean over anchors (the paper sums; the scale goes into ``beta``).  ``cl_denominator``:
  ``others`` (``j in I \\ {i}`` as written) or ``all`` (the usual InfoNCE).  Anchors: all items
  (``cl_items="all"``, as written) or the batch's items, at most ``cl_max_items``; negatives: all
  anchors (``cl_negatives=0``, as written) or that many sampled; computed in chunks of
  ``cl_chunk_size`` anchors, the anchors' gradient formed in the forward pass (the target is constant);
  ``cl_precision="bfloat16"`` forms logits and products in bfloat16 (an approximation, ~1e-3 relative).
* **L_intra** (eqs. 21-22): ``intra_loss="uniformity"`` (default) ``log mean_{i!=j} exp(-t ||f(x_i) -
  f(x_j)||^2)`` over ``intra_max_items`` sampled items; ``"literal"``: eq. 21 as printed, which is ``t``
  times the mean squared distance over all item pairs (minimising it pulls items together, the opposite of
  what the text says it does).  ``f`` = L2 normalisation, ``t = intra_t`` (2).
* **Loss** (eq. 24): ``L_bpr + beta L_inter + gamma L_intra + eta ||Theta||^2`` with ``eta = reg_weight`` on
  the batch's layer-0 embeddings.

Variants (``variant``, Table III): ``slifmr``, ``w/o KG``, ``w/o MM``, ``w/o KG&MM``, ``w/o SGE`` (no
``correlate`` relation), ``w/o CL`` (``beta = gamma = 0``).  Defaults the paper does not give: ``beta`` 0.1
and ``gamma`` 0.01 (inside its grids), ``tau`` 0.2, ``L_b = L_k = 2``, ``L_m = 1``, ``N = 10``,
``prune_ratio`` 0.1.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.errors import InputError
from dglmm.graph.cache import graph_key
from dglmm.graph.kg import knowledge_graph, prune_triples
from dglmm.graph.knn import check_neighbours, cosine_knn, normalize_edge_weights
from dglmm.graph.ops import average_graphs, interaction_graph, pruned_interactions, pruning_generator
from dglmm.graph.schema import ITEM, similar_etype
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, register
from dglmm.nn.added_relation import AddedRelation
from dglmm.nn.attention import ModalityAttention, RelationAttention, weighted_sum
from dglmm.nn.contrastive import Reading, contrastive_options
from dglmm.nn.init import xavier_embedding
from dglmm.nn.losses import PRECISIONS, info_nce_to_target, mean_squared_distance, uniformity
from dglmm.nn.modality import ModalityInputs
from dglmm.nn.propagation import FixedSparse, UserItemPropagation, relation_propagate
from dglmm.nn.relation_matmul import FastRelationAttention
from dglmm.options import MAX_DIM, MAX_LAYERS, Categorical, IntRange, Uniform, check_size, option

CORRELATE = (ITEM, "correlate", ITEM)
VARIANTS: dict[str, dict[str, bool]] = {
    "slifmr": dict(kg=True, mm=True, sge=True, cl=True),
    "w/o KG": dict(kg=False, mm=True, sge=True, cl=True),
    "w/o MM": dict(kg=True, mm=False, sge=True, cl=True),
    "w/o KG&MM": dict(kg=False, mm=False, sge=True, cl=True),
    "w/o SGE": dict(kg=True, mm=True, sge=False, cl=True),
    "w/o CL": dict(kg=True, mm=True, sge=True, cl=False),
}
AGGREGATIONS = ("ailf", "concat", "sum", "attention")


def _with(flag: str) -> dict[str, tuple[str, ...]]:
    """The ``active_when`` condition "a variant that has ``flag``" (kg, mm, sge, cl)."""
    return {"variant": tuple(v for v, f in VARIANTS.items() if f[flag])}


_PRUNING = {"prune_schedule": ("epoch", "once")}


_CL = contrastive_options(
    active_when=_with("cl"), renamed_from={n: f"inter_{n}" for n in ("weight", "temperature", "items", "max_items",
                                                                     "chunk_size")},
    weight=Reading(0.1, "beta of eq. 24, L_inter's (searched over the paper's grid 0.1-0.9, Fig. 6)",
                   Uniform(0.1, 0.9, step=0.1)),
    temperature=Reading(0.2, "tau of eq. 19"), items=Reading("all", "L_inter's anchors; eq. 19: 'all'"),
    max_items=Reading(0, "L_inter's anchors"), chunk_size=Reading(256, "L_inter's anchors"))


@dataclasses.dataclass
class SLIFMRConfig(_CL, ModelConfig):
    variant: str = option("slifmr", "Table III variant", choices=VARIANTS)
    aggregator: str = option("ailf", "fusion of the item views (Fig. 5): AILF eqs. 14-15, concat, sum, attention",
                             choices=AGGREGATIONS, renamed_from="aggregation")
    modalities: list[str] | None = option(None, "modalities of the feature graph (None: all the graph has)",
                                          active_when=_with("mm"))
    ui_layers: int = option(2, "L_b: LightGCN layers on the interaction graph (eqs. 7-8; searched over the "
                            "documented range 1-3)", low=0, high=MAX_LAYERS, space=IntRange(1, 3))
    mm_layers: int = option(1, "L_m: layers on the item feature graph S (eq. 9; searched over the documented "
                            "range 1-2)", low=0, high=MAX_LAYERS, space=IntRange(1, 2),
                            active_when=_with("mm"))
    kg_layers: int = option(2, "L_k: KG attention layers (eqs. 10-13; searched over the documented range 1-3)",
                            low=0, high=MAX_LAYERS, space=IntRange(1, 3),
                            active_when=_with("kg"))
    mm_input: str = option("id", "x_tilde^0 of eq. 9: item ID embedding or projected raw 'features'",
                           choices=("id", "features"), active_when=_with("mm"), reading=True)
    mm_exclude_self: bool = option(True, "eq. 9 sums over j != i: drop the kNN graphs' self edges",
                                   active_when=_with("mm"), reading=True)
    alpha_param: str = option("softmax", "alpha_m of eq. 5: 'softmax' of learnable logits or 'raw' weights",
                              choices=("softmax", "raw"), active_when=_with("mm"), reading=True)
    kg_item_embedding: str = option("shared", "items' KG embedding: their ID embedding or a 'separate' table",
                                    choices=("shared", "separate"), active_when=_with("kg"), reading=True)
    kg_relation_dim: int = option(0, "rows of W_r (eq. 11); 0: the embedding size (W_r is d x d)", low=0, high=MAX_DIM,
                                  active_when=_with("kg"))
    kg_projection: str = option("blocks", "W_r x of eq. 11: per distinct (node, relation) in relation "
                                "'blocks' (fast on CPU) or dgl 'gather_mm' per edge (RelationAttention)",
                                choices=("blocks", "gather_mm"), active_when=_with("kg"))
    kg_attention_update: str = option("batch", "eq. 11 scores recomputed with gradient in every forward ('batch') "
                                      "or once per epoch without gradient ('epoch', KGAT's schedule)",
                                      choices=("batch", "epoch"), active_when=_with("kg"), reading=True)
    kg_attention: str = option("layer0", "eq. 11 scores from layer-0 embeddings or from each layer's input",
                               choices=("layer0", "per_layer"),
                               active_when={**_with("kg"), "kg_attention_update": ("batch",)}, reading=True)
    prune_ratio: float = option(0.1, "share of interactions and KG triples dropped in training (eq. 6)",
                                low=0.0, high=1.0, high_open=True, active_when=_PRUNING)
    prune_schedule: str = option("epoch", "resample the pruned graphs every 'epoch', 'once', or 'none'",
                                 choices=("epoch", "once", "none"))
    prune_kg: bool = option(True, "prune the KG triples as well as the interactions (eq. 6)",
                            active_when={**_with("kg"), **_PRUNING})
    prune_seed: int = option(0, "seed of the pruning draws (with the epoch: pruned graphs are re-derivable)",
                             active_when=_PRUNING)
    sge_top_n: int = option(10, "N of eq. 17: correlate edges per item", low=1, active_when=_with("sge"))
    graph_update_every: int = option(1, "epochs between correlate rebuilds (Table IV); first after epoch 1",
                                     low=1, active_when=_with("sge"), renamed_from="update_interval")
    sge_mode: str = option("replace", "eq. 18: G^n 'replace's G^(n-1) or 'keep' = mean of the last two",
                           choices=("replace", "keep"), active_when=_with("sge"), reading=True)
    sge_keep_self: bool = option(False, "an item may be its own correlate neighbour",
                                 active_when=_with("sge"), reading=True)
    cl_denominator: str = option("others", "eq. 19 denominator: j != i ('others', as written) or 'all'",
                                 choices=("others", "all"), active_when=_with("cl"), renamed_from="inter_denominator",
                                 reading=True)
    cl_negatives: int = option(0, "0: every anchor's negatives are all anchors (eq. 19); k > 0: k sampled",
                               low=0, active_when=_with("cl"), renamed_from="inter_negatives")
    cl_precision: str = option("float32", "L_inter logits, exp and gradient product in 'float32' (exact) or "
                               "'bfloat16' (sums in float32; ~2x faster with AVX512-BF16, ~1e-3 relative error)",
                               choices=PRECISIONS, active_when=_with("cl"), renamed_from="inter_precision")
    intra_weight: float = option(0.01, "gamma of eq. 24 (searched over the paper's grid 1e-5 - 1e-1, Fig. 6)",
                                 low=0.0, space=Categorical((1e-5, 1e-4, 1e-3, 1e-2, 1e-1)),
                                 active_when=_with("cl"))
    intra_loss: str = option("uniformity", "eq. 21: 'uniformity' (log mean exp) or the 'literal' formula",
                             choices=("uniformity", "literal"), active_when=_with("cl"), reading=True)
    intra_t: float = option(2.0, "t of eq. 21", low=0.0, low_open=True, active_when=_with("cl"))
    intra_max_items: int = option(1024, "uniformity over this many sampled items (0: all; O(n^2))", low=0,
                                  active_when=_with("cl"))


class ItemViews(NamedTuple):
    user: torch.Tensor               # x_bar_u (eq. 8)
    views: list[torch.Tensor]        # [x_bar_i, x_tilde_i, x_hat_i] of the enabled views
    names: list[str]                 # "interaction", "feature", "kg"
    fused: torch.Tensor              # x_i (eq. 15)


class Working(NamedTuple):
    """The graphs one forward pass uses (pruned in training, full in evaluation), built once per key."""

    cf: dgl.DGLGraph                                  # user/item: interact, interacted_by (+ correlate)
    sim_weights: dict[str, torch.Tensor]              # similar_<m> weights (self edges zeroed)
    aug: dgl.DGLGraph                                 # dataset heterograph + correlate
    kg: dgl.DGLGraph | None                           # homogeneous typed KG (+ correlate)


@register
class SLIFMR(Recommender):
    """SLIF-MR: interaction, feature-graph and KG views fused per item (AILF), fed back as ``correlate`` edges."""

    name = "slifmr"
    Config = SLIFMRConfig

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: SLIFMRConfig) -> None:
        super().__init__(dataset, graph, config)
        self.flags = VARIANTS[config.variant]
        check_neighbours(config.sge_top_n, self.n_items, "model.sge_top_n", type(config).sge_top_n)
        check_size("model.cl_negatives", config.cl_negatives, self.n_items, "items")
        d = config.embedding_dim
        self.add_id_tables(d)
        self.propagation = UserItemPropagation("csr", "sym")
        self.correlate = AddedRelation(CORRELATE)
        self.view_names = ["interaction"]
        self.modalities: list[str] = []
        if self.flags["mm"]:
            self.inputs = ModalityInputs(graph, config.modalities, d if config.mm_input == "features" else None,
                                         relations=True)                                  # mm_input="features"
            self.modalities = self.inputs.names
            n_mix = len(self.modalities) + int(self.flags["sge"])
            start = torch.zeros(n_mix) if config.alpha_param == "softmax" else torch.full((n_mix,), 1.0 / n_mix)
            self.alpha = nn.Parameter(start)                                          # eq. 5 (+ G^n, eq. 18)
            self.view_names.append("feature")
        self.n_kg_relations = len(dataset.relation_names)
        if self.flags["kg"]:
            if len(dataset.kg) == 0 or not any("rel" in graph.edges[e].data for e in graph.canonical_etypes):
                raise InputError(f"SLIF-MR variant {config.variant!r} needs a knowledge graph; "
                                 f"dataset {dataset.name!r} has none in its graph (try variant='w/o KG')")
            self.entity_emb = xavier_embedding(max(1, dataset.n_entities), d)
            if config.kg_item_embedding == "separate":
                self.kg_item_emb = xavier_embedding(self.n_items, d)
            n_rel = 2 * self.n_kg_relations + int(self.flags["sge"])
            attention = FastRelationAttention if config.kg_projection == "blocks" else RelationAttention
            self.kg_attention = attention(n_rel, d, config.kg_relation_dim or d)                 # eqs. 11-12
            self.view_names.append("kg")
        n_views = len(self.view_names)
        if config.aggregator == "ailf":
            self.ailf = nn.Linear(n_views * d, n_views)                                   # eq. 14
        elif config.aggregator == "concat":
            self.concat = nn.Linear(n_views * d, d)
        elif config.aggregator == "attention":
            self.view_attention = ModalityAttention(d)
        self._epoch = 0
        self._working: dict[bool, tuple[tuple, Working]] = {}
        self._fixed_kg: tuple[tuple, FixedSparse] | None = None

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, graph: dgl.DGLGraph) -> None:
        self._epoch = epoch

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, graph: dgl.DGLGraph) -> None:
        """SGE (eqs. 16-18): rebuild ``correlate`` after the first epoch and every ``graph_update_every`` epochs."""
        if self.flags["sge"] and epoch % self.config.graph_update_every == 0:
            self.rebuild_correlate(graph)

    @torch.no_grad()
    def rebuild_correlate(self, graph: dgl.DGLGraph) -> None:
        was_training = self.training
        self.eval()
        fused = self.item_views(graph).fused
        self.train(was_training)
        src, dst, sim = cosine_knn(fused, self.config.sge_top_n, keep_self=self.config.sge_keep_self)  # eq. 16
        weight = normalize_edge_weights(src, dst, sim, self.n_items, "sym")                              # eq. 17
        if self.config.sge_mode == "keep" and self.correlate.built:
            src, dst, weight = average_graphs((self.correlate.src, self.correlate.dst, self.correlate.weight),
                                               (src, dst, weight), self.n_items)
        self.correlate.set(src, dst, weight)

    # -- the graphs of a forward pass --------------------------------------------------------------------------
    def _prune_stream(self) -> int | None:
        """The pruning draw of this pass: None (no pruning: evaluation or ``none``), else epoch or 0."""
        if not self.training or self.config.prune_schedule == "none" or self.config.prune_ratio == 0:
            return None
        return self._epoch if self.config.prune_schedule == "epoch" else 0

    def working(self, graph: dgl.DGLGraph) -> Working:
        stream = self._prune_stream()
        key = (graph_key(graph), stream, self.correlate.version)
        cached = self._working.get(stream is not None)
        if cached is None or cached[0] != key:
            cached = (key, self._build_working(graph, stream))
            self._working[stream is not None] = cached
        return cached[1]

    def _build_working(self, graph: dgl.DGLGraph, stream: int | None) -> Working:
        sge = self.flags["sge"] and self.correlate.built
        aug = self.correlate.attach(graph) if sge else graph
        gen = pruning_generator(self.config.prune_seed, stream) if stream is not None else None
        users, items = pruned_interactions(graph, self.config.prune_ratio, gen)          # eq. 6 on A
        extra = {CORRELATE: (*aug.edges(etype=CORRELATE, order="eid"), aug.edges[CORRELATE].data["w"])} if sge else None
        cf = interaction_graph(users, items, graph, extra)                               # eq. 7 on the pruned A
        sim_weights = {}
        for m in self.modalities:
            src, dst = graph.edges(etype=similar_etype(m), order="eid")
            w_m = graph.edges[similar_etype(m)].data["w"]
            sim_weights[m] = w_m * (src != dst).to(w_m) if self.config.mm_exclude_self else w_m
        kg = None
        if self.flags["kg"]:
            view = knowledge_graph(aug, self.n_kg_relations, extra=(CORRELATE,) if sge else ())
            kg = view.graph
            if gen is not None and self.config.prune_kg:                                  # eq. 6 on G_k
                kg = prune_triples(kg, self.n_kg_relations, self.config.prune_ratio, gen)
        return Working(cf, sim_weights, aug, kg)

    # -- the three views (eqs. 5-13) and the fusion (eqs. 14-15) ------------------------------------------------
    def interaction_view(self, work: Working) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 7-8 on ``A^n`` (eq. 18): LightGCN hops plus ``G^n`` in the item-item block, residual mean."""
        user0, item0 = self.user_emb.weight, self.item_emb.weight
        if self.config.ui_layers == 0:
            return user0, item0
        hop = self.propagation.bind(work.cf)
        has_g = CORRELATE in work.cf.canonical_etypes
        user, item, users, items = user0, item0, [], []
        for _ in range(self.config.ui_layers):
            new_user, new_item = hop(user, item)
            if has_g:
                new_item = new_item + relation_propagate(work.cf, CORRELATE, item)
            user, item = new_user, new_item
            users.append(user)
            items.append(item)
        return torch.stack(users).mean(0) + user0, torch.stack(items).mean(0) + item0

    def mixing_weights(self) -> torch.Tensor:
        """``alpha`` of eq. 5 (the last entry weighs ``G^n`` when SGE is on)."""
        return torch.softmax(self.alpha, 0) if self.config.alpha_param == "softmax" else self.alpha

    def feature_view(self, work: Working) -> torch.Tensor:
        """Eq. 9 on ``S^n = sum_m alpha_m S^m (+ alpha_G G^n)``."""
        if self.config.mm_input == "features":
            x0 = self.inputs.mean_projection(work.aug)  # over the modalities an item has
        else:
            x0 = self.item_emb.weight
        alpha = self.mixing_weights()
        has_g = CORRELATE in work.aug.canonical_etypes and self.flags["sge"]
        h, layers = x0, []
        for _ in range(self.config.mm_layers):
            out = sum(alpha[k] * relation_propagate(work.aug, similar_etype(m), h, work.sim_weights[m])
                      for k, m in enumerate(self.modalities))
            if has_g:
                out = out + alpha[-1] * relation_propagate(work.aug, CORRELATE, h)
            h = out
            layers.append(h)
        return torch.stack(layers).mean(0) + x0 if layers else x0

    def kg_view(self, work: Working) -> torch.Tensor:
        """Eqs. 10-13 over items and entities: relation attention, ``L_k`` hops, mean of layers ``0..L_k``."""
        items = self.kg_item_emb.weight if self.config.kg_item_embedding == "separate" else self.item_emb.weight
        h = torch.cat([items, self.entity_emb.weight[: work.kg.num_nodes() - self.n_items]])
        layers = [h]
        if self.config.kg_attention_update == "epoch" and work.kg.num_edges():
            hop = self._fixed_kg_hop(work, h)
            for _ in range(self.config.kg_layers):
                h = hop(h)
                layers.append(h)
            return torch.stack(layers).mean(0)[: self.n_items]
        weights = self.kg_attention(work.kg, h) if work.kg.num_edges() else None
        for _ in range(self.config.kg_layers):
            if weights is None:
                h = torch.zeros_like(h)
            else:
                if self.config.kg_attention == "per_layer" and len(layers) > 1:
                    weights = self.kg_attention(work.kg, h)
                h = RelationAttention.aggregate(work.kg, h, weights)
            layers.append(h)
        return torch.stack(layers).mean(0)[: self.n_items]

    def _fixed_kg_hop(self, work: Working, h: torch.Tensor) -> FixedSparse:
        """``kg_attention_update="epoch"``: eq. 11-12 scores from layer-0 embeddings, computed without gradient
        once per epoch and graph (every forward in evaluation), then CSR hops (``FixedSparse``)."""
        key = (graph_key(work.kg, data=("rel",)), self._epoch, self.training)
        if not self.training or self._fixed_kg is None or self._fixed_kg[0] != key:
            with torch.no_grad():
                weights = self.kg_attention(work.kg, h.detach())
            tails, heads = work.kg.edges()
            n = work.kg.num_nodes()
            self._fixed_kg = (key, FixedSparse(tails, heads, weights, n, n))
        return self._fixed_kg[1]

    def fuse(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Eqs. 14-15 (AILF) or the aggregators of Fig. 5."""
        if len(views) == 1:
            return views[0]
        agg = self.config.aggregator
        if agg == "ailf":
            return weighted_sum(self.ailf_weights(views), views)
        if agg == "concat":
            return self.concat(torch.cat(views, 1))
        if agg == "sum":
            return sum(views)
        return weighted_sum(self.view_attention(views), views)

    def ailf_weights(self, views: list[torch.Tensor]) -> torch.Tensor:
        """``alpha_i`` of eq. 14, ``[n_items, n_views]``."""
        return torch.softmax(self.ailf(torch.cat(views, 1)) / views[0].shape[1] ** 0.5, 1)

    def item_views(self, graph: dgl.DGLGraph) -> ItemViews:
        work = self.working(graph)
        user, item_bar = self.interaction_view(work)
        views = [item_bar]
        if self.flags["mm"]:
            views.append(self.feature_view(work))
        if self.flags["kg"]:
            views.append(self.kg_view(work))
        return ItemViews(user, views, self.view_names, self.fuse(views))

    # -- the contract ----------------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:
        views = self.item_views(graph)
        return Representations(views.user, views.fused, {"views": views})

    def model_terms(self, output: Representations, batch: Batch) -> dict[str, torch.Tensor]:
        """``beta L_inter + gamma L_intra`` of eq. 24 (BPR of eq. 23 and the L2 term: the base loss)."""
        terms = {}
        if not self.flags["cl"]:
            return terms
        views: ItemViews = output.extras["views"]
        if self.config.cl_weight > 0:
            terms["inter"] = self.config.cl_weight * self.inter_loss(views, batch)
        if self.config.intra_weight > 0:
            terms["intra"] = self.config.intra_weight * self.intra_loss(views)
        return terms

    def inter_loss(self, views: ItemViews, batch: Batch | None = None) -> torch.Tensor:
        """L_inter (eqs. 19-20): each view toward the stop-gradient fused representation."""
        c = self.config
        pos = batch.pos if batch is not None else torch.zeros(0, dtype=torch.long, device=views.fused.device)
        rows = c.rows(self.n_items, pos, batch.neg if batch is not None else pos)
        pick = (lambda x: x) if rows is None else (lambda x: x[rows])  # noqa: E731
        target = pick(views.fused.detach())
        negatives = None
        if c.cl_negatives > 0:
            negatives = torch.randint(len(target), (c.cl_negatives,), device=target.device)
        return sum(info_nce_to_target(pick(v), target, c.cl_temperature, negatives, c.cl_denominator == "others",
                                      c.cl_chunk_size, c.cl_precision, c.cl_critic)
                   for v in views.views)

    def intra_loss(self, views: ItemViews) -> torch.Tensor:
        """L_intra (eqs. 21-22) summed over the views, in the reading of ``intra_loss``."""
        c = self.config
        if c.intra_loss == "literal":
            return sum(mean_squared_distance(v, c.intra_t) for v in views.views)
        rows = None
        if 0 < c.intra_max_items < self.n_items:
            rows = torch.randperm(self.n_items, device=views.fused.device)[: c.intra_max_items]
        return sum(uniformity(v if rows is None else v[rows], c.intra_t) for v in views.views)

