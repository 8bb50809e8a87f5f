"""CAmgr (Li et al., Mathematics 2024): MGCN with ID-and-user purification, a GAT user-item view and cross-attention.

Read against MGCN (:mod:`dglmm.models.mgcn`, which this model extends), CAmgr keeps MGCN's purifier, item-item
view, preference gates, ``h = h_n + h_m`` and InfoNCE, and makes three changes, each an option value here, so
that every rung of the ladder MGCN -> CAmgr and every combination is one config (:data:`LADDER`):

1. ``id_guide``: ``item+users`` adds ``U_bar_i``, the mean ID embedding of the item's users, to the purifier's
   ID part (eqs. 2-6); ``item`` is MGCN's purifier.
2. ``ui_view``: ``gat``, a ReLU GAT on the user-item graph (eqs. 7-9); ``lightgcn`` is MGCN's user-item view.
3. ``fusion``: ``cross_attention`` with LayerNorm and MLP (eqs. 15-26); ``attention`` is MGCN's
   behaviour-aware fuser (its options ``fusion_softmax`` and ``fusion_mean`` then apply).

The defaults are all three changes with the paper's readings of the parts it prints differently from MGCN's
code (``knn_norm=rw`` eq. 12, ``user_modality=mean`` eq. 14, fixed features, Xavier initialisation, each
distinct batch user/item once in the InfoNCE); :data:`MGCN_READINGS` sets those back to MGCN's code, which with
the three changes switched off computes exactly ``mgcn`` (a test proves it).

The computation, with the paper's equation numbers (node-major tensors: rows are users or items):

* **ID-enhanced purification** (eqs. 1-6).  Each modality is aligned by a linear map ``H' = W_1 H + b_1``
  (eq. 1).  ``U_i = H_u A`` (eq. 2) divided by the user counts ``N_u = B A`` (eq. 3) is the mean ID embedding
  of each item's training users (eq. 4), a DGL mean over the ``interact`` relation (0 for items without one).
  The purified features are ``H'' = (H_i + U_bar_i) * sigmoid(W_2 H' + b_2)`` (eqs. 5-6).
* **Structure encoder**.  A GAT on the user-item graph (eqs. 7-8): ``H^l_n = ReLU(sum_i alpha_ni W^l H^{l-1}_i)``,
  ``alpha_ni = softmax_i(LeakyReLU(w^T [W^l H_n | W^l H_i]))`` through DGL's ``edge_softmax`` on the
  ``interact`` / ``interacted_by`` relations, one ``W^l`` and ``w`` per layer shared by users and items; the
  layer mean gives ``H_n`` (eq. 9).  Semantic graphs (eqs. 10-13): cosine similarity (eq. 10), top-k per item
  (eq. 11), ``D^-1 S'`` (eq. 12), one propagation ``H~_i = S'' H''_i`` (eq. 13); the user's modality
  representation is the mean over its training items (eq. 14) and ``H~ = [H~_u | H~_i]``.
* **Cross-attention fusion** (eqs. 15-23) in :mod:`dglmm.nn.cross_attention`: ``K, V`` from one modality,
  ``Q`` from the other (eqs. 15-17); ``CA = DA = softmax(QK^T/sqrt(d_k))`` (eqs. 18, 21); the common branch
  ``CR = Linear(CA V) + Q``, ``H_com = MLP(LN(CR)) + CR`` (eqs. 19-20) and the distinct branch
  ``DR = Linear(V - CA V) + Q``, ``H_dif = MLP(LN(DR)) + DR`` (eqs. 22-23).  "Linear(CA)" of an ``N x N``
  matrix cannot be meant literally (its output would be ``N x d'`` with weights tied to N): it is read as a
  linear map of ``CA V``, and ``V - DA`` as ``V - DA V``.  What ``QK^T`` attends over is ``attention_axis``:
  ``channels`` (default) reads the paper's ``d x N`` layout literally, a ``d x d`` attention over the channels
  whose scores sum over every user and item, O(N d^2); ``nodes`` is an ``N x N`` attention over the users and
  items, computed in query chunks (never an ``N x N`` tensor).
* **ID gates** (eqs. 24-26): ``H_n,com = sigmoid(W H_n + b)``, ``H_n,dif`` likewise,
  ``H_m = (H_com * H_n,com + H_dif * H_n,dif) / 2``.
* **Prediction** (eqs. 27-28): ``h = h_n + h_m``, ``y_ui = h_u . h_i``.
* **Loss** (eqs. 29-31): ``L = alpha_1 (L_u + L_i) + L_BPR + alpha_2 L2`` with InfoNCE between ``h_m`` and
  ``h_n`` of users and items (eq. 30), temperature 0.2 (the paper's set-up text calls it alpha_2 by mistake;
  alpha_2 is ``reg_weight``).

Variants (Table 3, ``variant``): ``w/o IUID`` drops eqs. 2-6: the aligned features ``H'`` (eq. 1) replace the
purified ``H''``.  ``w/o CAFF`` drops eqs. 15-26: ``H_m`` is the mean over modalities of ``H~_*``.
Modality subsets (Fig. 2): ``modalities``; with one modality ``Q``, ``K`` and ``V`` all come from it
(self-attention); with more than two, ``K`` and ``V`` come from the mean of the non-query modalities.

Readings that are options (defaults first): ``query_modality`` [text, else the first non-image modality; the
paper's K/V is the image]; ``attention_axis`` [``channels``; ``nodes``]; with ``nodes``, ``token_set``
[``all``: every query attends to all ``|U|+|I|`` tokens; ``sampled``: in training, keys are a random sample of
``n_key_tokens`` tokens; ``batch``: in training, keys are the batch's users and items] with ``eval_token_set``
[``all``: exact attention in evaluation; ``sampled``: a fixed key sample]; ``knn_source`` [``raw`` features as
MGCN's code; ``purified``: rebuilt each epoch from ``H''``];
``knn_norm`` [``rw`` = eq. 12, ``sym`` as MGCN's code]; ``knn_k`` [10, MGCN's code; Fig. 3 sweeps 5-25];
``user_modality`` [``mean`` = eq. 14; ``sym`` as MGCN]; ``cl_critic`` [``cosine`` as MGCN's code; ``dot`` as
eq. 30 is printed]; ``cl_items`` [``batch``: the batch's users and positive items, as MGCN's code; ``all`` as the
sums of eq. 30]; ``cl_distinct`` [True: each distinct batch user/item once; False: every row, as MGCN's code];
``l2_on`` [``final`` batch embeddings as MGCN's code; ``ego`` ID embeddings; ``all`` parameters as eq. 31 is
printed]; ``gat_activation`` [``relu`` as eq. 7; ``none``]; ``gat_transform`` [``learned`` ``W^l`` as eq. 7;
``identity``: ``W^l = I``, the layers only attend]; ``mlp_hidden`` / ``mlp_init`` [64, PyTorch's default
initialisation; ``zero`` last layer]; ``trainable_features`` [False: fixed extracted features as section 3.2;
True as MGCN]; ``linear_init`` [``xavier`` as section 4.3; ``default`` as MGCN's code].
"""

from __future__ import annotations

import dataclasses

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.errors import InputError
from dglmm.graph.cache import graph_key
from dglmm.graph.schema import INTERACT_ETYPE, INTERACTED_BY_ETYPE, ITEM, USER
from dglmm.models.base import register
from dglmm.models.mgcn import MGCN, MGCNConfig
from dglmm.nn.attention import GATLayer
from dglmm.nn.cross_attention import CrossAttention, ResidualMLP
from dglmm.nn.item_graph import ItemGraph
from dglmm.nn.losses import CRITICS
from dglmm.nn.propagation import item_mean
from dglmm.options import (
    MAX_DIM,
    MAX_LAYERS,
    Above,
    Categorical,
    IntRange,
    LogUniform,
    OptionError,
    Uniform,
    option,
)

VARIANTS = ("camgr", "w/o IUID", "w/o CAFF")
_FUSION = {"variant": ("camgr", "w/o IUID")}                      # a fusion block at all (not w/o CAFF)
_CROSS = {"fusion": ("cross_attention",)}                         # the cross-attention fusion (eqs. 15-26)
_MGCN_FUSER = {"fusion": ("attention",)}                          # MGCN's behaviour-aware fuser
_GAT = {"ui_view": ("gat",)}                                      # the GAT user-item view (eqs. 7-9)
_FEW_KEYS = {"token_set": ("sampled", "batch")}                  # attention over a subset of the tokens
_INFO = {"cl_weight": Above(0.0)}                                 # the InfoNCE term of eqs. 29-30

#: the options by which CAmgr's paper reads the parts it shares with MGCN differently from MGCN's code; with
#: these and the three changes switched off, ``camgr`` computes ``mgcn``
MGCN_READINGS = {"knn_norm": "sym", "user_modality": "sym", "trainable_features": True, "linear_init": "default",
                 "cl_distinct": False}
#: the three changes of CAmgr over MGCN, each off (MGCN's value) and on (CAmgr's)
CHANGES = {"id_guide": ("item", "item+users"), "ui_view": ("lightgcn", "gat"),
           "fusion": ("attention", "cross_attention")}


def _switches(*on: str) -> dict[str, str]:
    return {name: values[name in on] for name, values in CHANGES.items()}


#: the ladder MGCN -> CAmgr as (label, camgr options): the changes added one at a time on MGCN's readings,
#: then CAmgr's own readings, then the combinations that drop one change from CAmgr
LADDER = [
    ("MGCN", {**_switches(), **MGCN_READINGS}),
    ("+U_i", {**_switches("id_guide"), **MGCN_READINGS}),
    ("+U_i +GAT", {**_switches("id_guide", "ui_view"), **MGCN_READINGS}),
    ("+U_i +GAT +cross-attention", {**_switches("id_guide", "ui_view", "fusion"), **MGCN_READINGS}),
    ("CAmgr", {}),
    ("CAmgr, LightGCN view", {"ui_view": "lightgcn"}),
    ("CAmgr, MGCN fusion", {"fusion": "attention"}),
    ("CAmgr, LightGCN view + MGCN fusion", {"ui_view": "lightgcn", "fusion": "attention"}),
]


def ladder_rungs() -> list[tuple[str, dict]]:
    """:data:`LADDER` (a copy), for the recipes."""
    return [(label, dict(options)) for label, options in LADDER]


@dataclasses.dataclass
class CAmgrConfig(MGCNConfig):
    # -- MGCN's options, with CAmgr's readings as defaults ------------------------------------------------
    reg_weight: float = option(1e-4, "alpha_2 of eq. 31, on what l2_on names; searched over LightGCN sec. 4.1's "
                               "range 1e-6..1e-2", low=0.0, space=LogUniform(1e-6, 1e-2))
    n_layers: int = option(2, "layers L of the user-item view (GAT eqs. 7-9, or LightGCN; MGCN's code uses 2; "
                           "searched over the documented range 1-3)", low=0, high=MAX_LAYERS, space=IntRange(1, 3))
    item_layers: int = option(1, "propagations over each semantic graph (eq. 13: one)", low=0, high=MAX_LAYERS)
    knn_k: int = option(10, "top-k of the semantic graphs (eq. 11; searched over Fig. 3's sweep 5-25)", low=1,
                        space=IntRange(5, 25, step=5))
    knn_norm: str = option("rw", "eq. 12: 'rw' D^-1 S (paper) or 'sym' D^-1/2 S D^-1/2 (MGCN code)",
                           choices=("rw", "sym"), reading=True)
    user_modality: str = option("mean", "users' modality representation: 'mean' of their items' (eq. 14) or "
                                        "'sym' over sqrt(|N_u||N_i|) (MGCN)", choices=("mean", "sym"), reading=True)
    trainable_features: bool = option(False, "fine-tune the item features (MGCN code) instead of fixed ones",
                                      reading=True)
    linear_init: str = option("xavier", "initialisation of the alignment (eq. 1) and purifier gates (eqs. 5-6): "
                                        "'xavier' (section 4.3) or PyTorch 'default' (MGCN code)",
                              choices=("xavier", "default"), reading=True)
    fusion_softmax: str = option("modalities", "with fusion='attention', MGCN's eq. 12 softmax over the "
                                               "'modalities' of each node (MGCN code) or over all 'nodes'",
                                 choices=("modalities", "nodes"), active_when=_MGCN_FUSER, reading=True)
    fusion_mean: str = option("with_common", "with fusion='attention', MGCN's eq. 15: 'with_common' (code) or "
                                             "'specific' (MGCN paper)", choices=("with_common", "specific"),
                              active_when=_MGCN_FUSER, reading=True)
    cl_weight: float = option(0.01, "alpha_1 of eq. 31 (Table 4: best 0.01; searched over Table 4's grid)",
                              low=0.0, space=Categorical((0.001, 0.01, 0.1)))
    cl_temperature: float = option(0.2, "tau of eq. 30 (searched over the documented range 0.1-1.0)", low=0.0,
                                   low_open=True, space=Uniform(0.1, 1.0, step=0.1), active_when=_INFO)
    cl_critic: str = option("cosine", "critic of eq. 30: 'cosine' (MGCN code) or 'dot' (as printed)",
                            choices=CRITICS, active_when=_INFO, renamed_from="cl_similarity", reading=True)
    cl_items: str = option("batch", "InfoNCE over the 'batch' users/positive items (MGCN code) or 'all'",
                           choices=("batch", "all"), renamed_from="cl_nodes", reading=True)
    cl_distinct: bool = option(True, "InfoNCE over each distinct batch user/item once (True) or every batch row, "
                                     "repeats included (False, MGCN code)",
                               active_when={"cl_items": ("batch",), **_INFO}, reading=True)
    l2_on: str = option("final", "L2 (alpha_2) on the 'final' batch embeddings (MGCN code), the batch's 'ego' ID "
                                 "embeddings, or 'all' parameters (eq. 31 as printed)",
                        choices=("final", "ego", "all"), reading=True)
    # -- CAmgr's own ------------------------------------------------------------------------------------------
    variant: str = option("camgr", "Table 3: camgr, 'w/o IUID' (no ID purification), 'w/o CAFF' (mean fusion)",
                          choices=VARIANTS)
    id_guide: str = option("item+users", "ID part of eqs. 5-6: 'item+users' H_i + U_bar_i (paper) or 'item' "
                                         "H_i alone (MGCN's purifier)", choices=("item+users", "item"),
                           active_when={"variant": ("camgr", "w/o CAFF")}, reading=True)
    ui_view: str = option("gat", "user-item view: 'gat' (eqs. 7-9) or 'lightgcn' (MGCN's)",
                          choices=("gat", "lightgcn"))
    fusion: str = option("cross_attention", "fusion: 'cross_attention' (eqs. 15-26) or 'attention' (MGCN's "
                                            "behaviour-aware fuser)", choices=("cross_attention", "attention"),
                         active_when=_FUSION)
    query_modality: str | None = option(None, "modality giving Q (eq. 16); None: text, else the first "
                                              "non-image one; K and V come from the others (eqs. 15, 17)",
                                        active_when=_CROSS)
    gat_activation: str = option("relu", "sigma of eq. 7", choices=("relu", "none"), active_when=_GAT, reading=True)
    gat_transform: str = option("learned", "W^l of eq. 7: 'learned' (Xavier-initialised) or 'identity' (W^l = I, "
                                           "attention-weighted propagation)",
                                choices=("learned", "identity"), active_when=_GAT, reading=True)
    gat_negative_slope: float = option(0.2, "LeakyReLU slope of eq. 8", low=0.0, active_when=_GAT)
    gat_self_loops: bool = option(False, "N(n) of eq. 7 includes n itself (GAT's N_i, PyG GATConv's default)",
                                  active_when=_GAT, reading=True)
    knn_source: str = option("raw", "semantic graphs from 'raw' features (MGCN code) or 'purified' H'' "
                                    "(rebuilt at every epoch's first batch)", choices=("raw", "purified"), reading=True)
    attention_axis: str = option("channels", "what QK^T of eq. 18 attends over: 'channels' (d x d: the paper's "
                                             "d x N matrices read literally) or 'nodes' (N x N over all user and "
                                             "item tokens, chunked)", choices=("channels", "nodes"),
                                 active_when=_CROSS, reading=True)
    token_set: str = option("all", "keys of the cross-attention in training: 'all' nodes, a 'sampled' subset "
                                   "of n_key_tokens, or the 'batch' nodes (evaluation: eval_token_set)",
                            choices=("all", "sampled", "batch"), active_when={"attention_axis": ("nodes",)})
    n_key_tokens: int = option(1024, "keys per forward when token_set='sampled' (or 'batch' with cl_items='all')",
                               low=1, active_when=_FEW_KEYS)
    eval_token_set: str = option("all", "keys in evaluation when token_set is not 'all': 'all' tokens (exact) "
                                        "or a fixed 'sampled' set of n_key_tokens", choices=("all", "sampled"),
                                 active_when=_FEW_KEYS)
    eval_key_seed: int = option(0, "seed of the fixed evaluation key sample (eval_token_set='sampled')", low=0,
                                active_when={"eval_token_set": ("sampled",)})
    attention_chunk: int = option(1024, "query rows per attention block (memory chunk x N)", low=1,
                                  active_when=_CROSS)
    mlp_hidden: int = option(64, "hidden width of the MLPs of eqs. 20 and 23", low=1, high=MAX_DIM, active_when=_CROSS)
    mlp_init: str = option("default", "last layer of the MLPs of eqs. 20/23: PyTorch 'default' or 'zero' (H = R at "
                                      "initialisation)", choices=("default", "zero"), active_when=_CROSS, reading=True)

    def check_options(self, section: str = "model") -> None:
        """``token_set`` chooses keys of the attention over nodes: with ``channels`` only ``all`` exists."""
        if self.attention_axis == "channels" and self.token_set != "all":
            raise OptionError(f"{section}.token_set chooses the keys of attention over nodes; with "
                              f"{section}.attention_axis='channels' it must be 'all'")


SELF_LOOP_ETYPES = ((USER, "self", USER), (ITEM, "self", ITEM))


class GATEncoder(nn.Module):
    """Eqs. 7-9 on the bipartite user-item graph: ``L`` GAT layers (one ``W^l`` and ``w`` each), layer mean.

    ``self_loops``: ``N(n)`` of eq. 7 also holds ``n`` itself (GAT's ``N_i``; PyTorch Geometric's ``GATConv``
    default), through ``user -> user`` / ``item -> item`` relations of a graph built once per interaction graph.
    """

    def __init__(self, dim: int, n_layers: int, activation: str, negative_slope: float,
                 transform: str = "learned", self_loops: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GATLayer(dim, dim, negative_slope, activation, transform)
                                    for _ in range(n_layers))
        self.self_loops = self_loops
        self._looped: tuple[tuple, dgl.DGLGraph] | None = None

    def attention_graph(self, graph: dgl.DGLGraph) -> tuple[dgl.DGLGraph, list]:
        """The graph and relations the layers attend over (with self loops: a user-item graph of four)."""
        etypes = [INTERACT_ETYPE, INTERACTED_BY_ETYPE]
        if not self.self_loops:
            return graph, etypes
        users, items = graph.edges(etype=INTERACT_ETYPE)
        n_users, n_items = graph.num_nodes(USER), graph.num_nodes(ITEM)
        key = graph_key(graph, [INTERACT_ETYPE])
        if self._looped is None or self._looped[0] != key:
            loops = {SELF_LOOP_ETYPES[0]: (torch.arange(n_users, device=graph.device),) * 2,
                     SELF_LOOP_ETYPES[1]: (torch.arange(n_items, device=graph.device),) * 2}
            looped = dgl.heterograph({INTERACT_ETYPE: (users, items), INTERACTED_BY_ETYPE: (items, users), **loops},
                                     {USER: n_users, ITEM: n_items}, device=graph.device)
            self._looped = (key, looped)
        return self._looped[1], [*etypes, *SELF_LOOP_ETYPES]

    def forward(self, graph: dgl.DGLGraph, user_h: torch.Tensor,
                item_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``H_n = 1/(L+1) sum_l H^l_n`` (eq. 9) with ``H^l`` from eqs. 7-8."""
        graph, etypes = self.attention_graph(graph)
        users, items = [user_h], [item_h]
        for layer in self.layers:
            out = layer(graph, {"user": user_h, "item": item_h}, etypes)
            user_h, item_h = out["user"], out["item"]
            users.append(user_h)
            items.append(item_h)
        return torch.stack(users).mean(0), torch.stack(items).mean(0)


@register
class CAmgr(MGCN):
    """CAmgr (Mathematics'24): MGCN with ID-and-user purification, a GAT user-item view and cross-attention fusion."""

    name = "camgr"
    Config = CAmgrConfig
    input_legacy_names = {"align": "projections", "features": "features"}   # before the modality block

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: CAmgrConfig) -> None:
        super().__init__(dataset, graph, config)
        self._rebuild = True

    # -- construction steps (MGCN's order: ID tables, eq. 1 alignment, eqs. 5-6 gates, views, fusion) ------
    def check_modalities(self) -> None:
        self.query_modality = self._query_modality(self.config.query_modality)
        self.kv_modalities = [m for m in self.modalities if m != self.query_modality] or [self.query_modality]

    def build_ui_view(self, config: CAmgrConfig) -> None:
        if config.ui_view == "lightgcn":
            return super().build_ui_view(config)
        self.encoder = GATEncoder(config.embedding_dim, config.n_layers, config.gat_activation,       # eqs. 7-9
                                  config.gat_negative_slope, config.gat_transform, config.gat_self_loops)

    def build_fusion(self, config: CAmgrConfig) -> None:
        if config.fusion == "attention":
            return super().build_fusion(config)
        d = config.embedding_dim
        self.cross = CrossAttention(d, config.attention_chunk, config.attention_axis)         # eqs. 15-18
        zero = config.mlp_init == "zero"
        self.common_branch = ResidualMLP(d, config.mlp_hidden, zero)                         # eqs. 19-20
        self.distinct_branch = ResidualMLP(d, config.mlp_hidden, zero)                       # eqs. 22-23
        self.gate_common = nn.Linear(d, d)                                                    # eq. 24
        self.gate_distinct = nn.Linear(d, d)                                                  # eq. 25

    def frozen_item_graphs(self, graph: dgl.DGLGraph) -> None:
        if self.config.knn_source == "raw":
            super().frozen_item_graphs(graph)

    def _query_modality(self, chosen: str | None) -> str:
        if chosen is not None:
            if chosen not in self.modalities:
                raise InputError(f"model.query_modality {chosen!r} is not one of the modalities {self.modalities}")
            return chosen
        if "text" in self.modalities:
            return "text"
        others = [m for m in self.modalities if m != "image"]
        return others[0] if others else self.modalities[0]

    # -- hooks: the purified semantic graphs are rebuilt on the first batch of each epoch ------------------
    def on_batch_start(self, batch_index: int) -> None:
        self._rebuild = self._rebuild or batch_index == 0

    # -- eqs. 1-6 ---------------------------------------------------------------------------------------------
    def purifier_ids(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """``H_i + U_bar_i`` (eqs. 2-5), or ``H_i`` alone (``id_guide="item"``, MGCN's purifier)."""
        ids = self.item_emb.weight
        if self.config.id_guide == "item+users":
            ids = ids + item_mean(graph, self.user_emb.weight)                              # eqs. 2-4
        return ids

    def purified(self, graph: dgl.DGLGraph) -> dict[str, torch.Tensor]:
        """``H'' = (H_i + U_bar_i) * sigmoid(W_2 H' + b_2)`` (eqs. 2-6); ``H'`` itself for ``w/o IUID``."""
        if self.config.variant == "w/o IUID":
            return {m: self._masked(self.aligned(graph, m), m) for m in self.modalities}
        return super().purified(graph)

    # -- eqs. 7-14 --------------------------------------------------------------------------------------------
    def ui_view(self, graph: dgl.DGLGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """``H_n`` of eq. 9 (GAT), or MGCN's LightGCN view."""
        if self.config.ui_view == "lightgcn":
            return super().ui_view(graph)
        return self.encoder(graph, self.user_emb.weight, self.item_emb.weight)

    def semantic_graphs(self, graph: dgl.DGLGraph, purified: dict[str, torch.Tensor]) -> ItemGraph:
        """Eqs. 10-12 on the raw features (built once) or on ``H''`` (rebuilt each epoch and in evaluation)."""
        if self.config.knn_source == "raw":
            return super().semantic_graphs(graph, purified)
        if self._rebuild or not self.training or not self.semantic.built:
            self.semantic.rebuild([purified[m] for m in self.modalities],
                                  masks=[self.inputs.mask(m) for m in self.modalities])
            self._rebuild = False
        return self.semantic

    # -- eqs. 15-26 -------------------------------------------------------------------------------------------
    def fuse(self, tokens: dict[str, torch.Tensor], h_n: torch.Tensor, queries: torch.Tensor | None = None,
             users: torch.Tensor | None = None, items: torch.Tensor | None = None) -> torch.Tensor:
        """``H_m`` of the ``queries`` tokens (all when None) attending to the key tokens (eqs. 15-26); the mean
        of the modalities for ``w/o CAFF``; MGCN's fuser with ``fusion="attention"``."""
        if self.config.variant == "w/o CAFF":
            mean = torch.stack(list(tokens.values())).mean(0)
            return mean if queries is None else mean[queries]
        if self.config.fusion == "attention":
            return super().fuse(tokens, h_n, queries)
        x_q = tokens[self.query_modality]
        x_kv = torch.stack([tokens[m] for m in self.kv_modalities]).mean(0)
        keys = self._keys(h_n.device, users, items)
        common, distinct, q = self.cross(x_q, x_kv, queries, keys)                          # eqs. 15-18, 21
        h_com = self.common_branch(common, q)                                                # eqs. 19-20
        h_dif = self.distinct_branch(distinct, q)                                            # eqs. 22-23
        gate_com = torch.sigmoid(self.gate_common(h_n))                                      # eq. 24
        gate_dif = torch.sigmoid(self.gate_distinct(h_n))                                    # eq. 25
        return 0.5 * (h_com * gate_com + h_dif * gate_dif)                                   # eq. 26

    def _keys(self, device: torch.device, users: torch.Tensor | None = None,
              items: torch.Tensor | None = None) -> torch.Tensor | None:
        """Key tokens under ``token_set`` in training, ``eval_token_set`` in evaluation (None: all tokens)."""
        n = self.n_users + self.n_items
        if not self.training:
            if self.config.eval_token_set == "all" or self.config.token_set == "all":
                return None
            generator = torch.Generator().manual_seed(self.config.eval_key_seed)  # the same keys every time
            return torch.randperm(n, generator=generator)[: self.config.n_key_tokens].to(device)
        if self.config.token_set == "sampled" or (self.config.token_set == "batch" and users is None):
            return torch.randperm(n, device=device)[: self.config.n_key_tokens]
        if self.config.token_set == "batch":
            return torch.cat([users, items + self.n_users])
        return None
