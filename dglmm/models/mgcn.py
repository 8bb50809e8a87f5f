"""MGCN (Yu et al., ACM MM'23): behaviour-guided purifier, user-item and item-item views, behaviour-aware fuser.

The computation, with the paper's equation numbers (node-major tensors: rows are users or items; ``M`` the
modalities, two in the paper, any number here):

* **Behaviour-guided purifier** (eqs. 1-2).  Each modality is projected, ``x'_m = W_1 x_m + b_1`` (eq. 1), and
  gated by the item's behaviour (ID) embedding, ``x''_m = e_id * sigmoid(W_2 x'_m + b_2)`` (eq. 2).
* **User-item view** (eqs. 3-5): LightGCN over ``interact`` / ``interacted_by`` with the stored weights
  ``1/sqrt(d_u d_i)`` (no self loops), the mean of layers ``0..L`` of the ID embeddings gives ``E_id``.
* **Item-item view** (eqs. 6-10): per modality a kNN graph of the raw features (cosine, top-k per item, the item
  itself a candidate, directed), ``D^-1/2 S D^-1/2``, built once and frozen (:class:`~dglmm.nn.item_graph.ItemGraph`, one relation per modality);
  ``item_layers`` propagations of the purified features give ``E_i,m``; a user's modality representation is
  ``sum_{i in N_u} E_i,m / sqrt(|N_u| |N_i|)`` (eq. 10), i.e. the same normalised user-item block.
* **Behaviour-aware fuser** (eqs. 11-15): preferences ``P_m = sigmoid(W_3 E_id + b_3)`` (eq. 11, one gate per
  modality as the official code); ``alpha_m = softmax(q^T tanh(W_4 E_m + b_4))`` (eq. 12, parameters shared by
  the modalities; :class:`~dglmm.nn.attention.ModalityAttention`); common part ``E_s = sum_m alpha_m E_m``
  (eq. 13); specific parts ``E~_m = E_m - E_s`` (eq. 14); ``E_mul`` from ``E_s`` and ``P_m * E~_m`` (eq. 15).
* **Prediction** (eqs. 17-18): ``e = E_id + E_mul``, ``y_ui = e_u . e_i``.
* **Loss** (eqs. 16, 19): BPR + ``cl_weight`` x (InfoNCE of users + InfoNCE of items between ``E_mul`` and
  ``E_id``, temperature 0.2) + ``reg_weight`` x L2.

Defaults are the official code's (``demonph10/MGCN``; MMRec's ``src/models/mgcn.py`` is the same file), and
where it departs from the paper the paper's reading is an option (defaults first): ``fusion_softmax``
[``modalities``: ``alpha`` normalised over the modalities of each user or item, as both codes do; ``nodes``:
eq. 12 read literally on the ``d x (|U|+|I|)`` matrix ``E_m``, each modality's weights normalised over all users
and items]; ``fusion_mean`` [``with_common``: ``(E_s + sum_m P_m * E~_m) / (|M| + 1)``, the code's division by
3 for two modalities; ``specific``: eq. 15, ``E_s + 1/|M| sum_m P_m * E~_m``]; ``cl_critic`` [``cosine`` as the
code; ``dot`` as eq. 16 is printed]; ``cl_items`` [``batch``: the batch's users and positive items, as the code;
``all``: the sums of eq. 16]; ``cl_distinct`` [False: every row of the batch, repeats included, as the code;
True: each distinct user and item once]; ``l2_on`` [``final`` batch embeddings as the code; ``ego`` ID
embeddings; ``all`` parameters, ``lambda_E ||E||`` of eq. 19]; ``trainable_features`` [True: the code wraps the
features in a trainable embedding; the kNN graphs stay those of the initial features]; ``user_modality``
[``sym`` (eq. 10); ``mean`` over the user's items, as CAmgr's eq. 14]; ``knn_norm`` [``sym``; ``rw``];
``linear_init`` [``default`` PyTorch initialisation of the projections and purifier gates, as the code;
``xavier``].  The official learning-rate decay (x0.96 every 50 epochs) is not modelled: the trainer keeps the
learning rate constant.

:class:`MGCN` is also the base of CAmgr (:mod:`dglmm.models.camgr`), which replaces parts of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.graph.features import apply_mask, item_features, item_modalities
from dglmm.graph.knn import check_neighbours
from dglmm.graph.schema import INTERACTED_BY_ETYPE
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, Rows, register
from dglmm.nn.attention import ModalityAttention, weighted_sum
from dglmm.nn.item_graph import ItemGraph
from dglmm.nn.losses import CRITICS, info_nce, l2_penalty
from dglmm.nn.modality import LEGACY_NAMES, ModalityInputs
from dglmm.nn.propagation import UserItemPropagation, layer_mean, relation_propagate, user_mean
from dglmm.options import MAX_LAYERS, Above, Categorical, LogUniform, option

_INFO = {"cl_weight": Above(0.0)}                                  # the InfoNCE term of eq. 16
_BATCH_ROWS = {"cl_items": ("batch",), **_INFO}


@dataclasses.dataclass
class MGCNConfig(ModelConfig):
    reg_weight: float = option(1e-4, "L2 weight (lambda_E of eq. 19; the code's 1e-4) on what l2_on names; searched "
                               "over LightGCN sec. 4.1's range 1e-6..1e-2", low=0.0, space=LogUniform(1e-6, 1e-2))
    modalities: list[str] | None = option(None, "modalities used (None: all the graph has)")
    n_layers: int = option(2, "LightGCN layers of the user-item view (eqs. 3-5; the code's n_ui_layers)", low=0,
                           high=MAX_LAYERS)
    item_layers: int = option(1, "propagations over each item-item graph (eq. 9; the code's n_layers)", low=0,
                              high=MAX_LAYERS)
    knn_k: int = option(10, "neighbours per item in each modality's kNN graph (eq. 7)", low=1)
    knn_norm: str = option("sym", "eq. 8: 'sym' D^-1/2 S D^-1/2 (paper and code) or 'rw' D^-1 S",
                           choices=("sym", "rw"), reading=True)
    user_modality: str = option("sym", "users' modality representation (eq. 10): 'sym' sum of their items' over "
                                       "sqrt(|N_u||N_i|) (paper and code) or 'mean' of their items'",
                                choices=("sym", "mean"), reading=True)
    trainable_features: bool = option(True, "fine-tune the item features (the code's trainable embedding) "
                                            "instead of keeping the extracted ones fixed", reading=True)
    linear_init: str = option("default", "initialisation of the projections (eq. 1) and purifier gates (eq. 2): "
                                         "PyTorch 'default' (code) or 'xavier' weights", choices=("default", "xavier"),
                                         reading=True)
    fusion_softmax: str = option("modalities", "axis of eq. 12's softmax: over the 'modalities' of each node "
                                               "(code) or over all 'nodes' per modality (eq. 12 read literally)",
                                 choices=("modalities", "nodes"), reading=True)
    fusion_mean: str = option("with_common", "eq. 15: 'with_common' (E_s + sum_m P_m E~_m) / (|M|+1) (code) or "
                                             "'specific' E_s + mean_m P_m E~_m (paper)",
                              choices=("with_common", "specific"), reading=True)
    cl_weight: float = option(0.01, "lambda_C of eq. 19 (searched over the code's grid {0.001, 0.01, 0.1})",
                              low=0.0, space=Categorical((0.001, 0.01, 0.1)))
    cl_temperature: float = option(0.2, "tau of eq. 16 (0.2 in the code)", low=0.0, low_open=True,
                                   active_when=_INFO)
    cl_critic: str = option("cosine", "critic of eq. 16: 'cosine' (code) or 'dot' (as printed)", choices=CRITICS,
                            active_when=_INFO, reading=True)
    cl_items: str = option("batch", "InfoNCE over the 'batch' users and positive items (code) or 'all' (eq. 16)",
                           choices=("batch", "all"), active_when=_INFO, reading=True)
    cl_distinct: bool = option(False, "InfoNCE over each distinct batch user/item once (True) or every batch row, "
                                      "repeats included (False, code)", active_when=_BATCH_ROWS, reading=True)
    l2_on: str = option("final", "L2 (reg_weight) on the 'final' batch embeddings (code), the batch's 'ego' ID "
                                 "embeddings, or 'all' parameters (eq. 19)", choices=("final", "ego", "all"),
                                 reading=True)


@register
class MGCN(Recommender):
    """MGCN (MM'23): behaviour-purified modalities, LightGCN and frozen kNN views, behaviour-aware fusion."""

    name = "mgcn"
    Config = MGCNConfig
    needs_modalities = True
    #: former names of the modality block's parameters on the model (see :data:`dglmm.nn.modality.LEGACY_NAMES`)
    input_legacy_names: dict[str, str] = LEGACY_NAMES

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: MGCNConfig) -> None:
        super().__init__(dataset, graph, config)
        d = config.embedding_dim
        check_neighbours(config.knn_k, self.n_items, "model.knn_k", type(config).knn_k)
        self.modalities = item_modalities(graph, config.modalities)
        self.check_modalities()
        self.add_id_tables(d)
        self.inputs = ModalityInputs(graph, self.modalities, d, config.trainable_features, init=None,  # eq. 1
                                     legacy_names=self.input_legacy_names)
        self.gate = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})              # eq. 2
        if config.linear_init == "xavier":
            self.inputs.init_projections("xavier")
            for lin in self.gate.values():
                nn.init.xavier_uniform_(lin.weight)
        self.build_ui_view(config)
        self.build_fusion(config)
        self.semantic = ItemGraph(self.n_items, config.knn_k, schedule="frozen", norm=config.knn_norm,
                                  fuse="after_norm")                                       # eqs. 6-8
        self.frozen_item_graphs(graph)

    # -- construction steps a variant replaces ------------------------------------------------------------
    def check_modalities(self) -> None:
        """Checks of the modality set before any parameter is drawn (none here)."""

    def build_ui_view(self, config: MGCNConfig) -> None:
        """The user-item view's modules: LightGCN has no parameters, only its CSR propagation."""
        self.propagation = UserItemPropagation("csr")

    def build_fusion(self, config: MGCNConfig) -> None:
        """Eq. 12's attention (shared by the modalities) and eq. 11's preference gates (one per modality)."""
        d = config.embedding_dim
        self.attention = ModalityAttention(d)
        self.prefer = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})

    def frozen_item_graphs(self, graph: dgl.DGLGraph) -> None:
        """Eqs. 6-8 on the raw features, once; items without a modality: zero features, no edges."""
        features = item_features(graph, self.modalities)
        self.semantic.rebuild([features[m].float() for m in self.modalities],
                              masks=[self.inputs.mask(m) for m in self.modalities])

    # -- eqs. 1-2 -------------------------------------------------------------------------------------------
    def aligned(self, graph: dgl.DGLGraph, modality: str) -> torch.Tensor:
        """``x' = W_1 x + b_1`` (eq. 1)."""
        return self.inputs.project(graph, modality, masked=False)

    def purifier_ids(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """The behaviour embedding that gates the features in eq. 2: the item ID embedding."""
        return self.item_emb.weight

    def purified(self, graph: dgl.DGLGraph) -> dict[str, torch.Tensor]:
        """``x'' = e_id * sigmoid(W_2 x' + b_2)`` (eq. 2) per modality (zero rows for items without it)."""
        ids = self.purifier_ids(graph)
        return {m: self._masked(ids * torch.sigmoid(self.gate[m](self.aligned(graph, m))), m)
                for m in self.modalities}

    def _masked(self, h: torch.Tensor, modality: str) -> torch.Tensor:
        """Zero rows for the items that lack ``modality`` (they carry no information from it)."""
        return apply_mask(h, self.inputs.mask(modality))

    # -- eqs. 3-10 --------------------------------------------------------------------------------------------
    def ui_view(self, graph: dgl.DGLGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """``E_id``: the mean of LightGCN layers ``0..L`` of the ID embeddings (eqs. 3-5)."""
        return layer_mean(self.propagation, graph, self.user_emb.weight, self.item_emb.weight,
                          self.config.n_layers)

    def semantic_graphs(self, graph: dgl.DGLGraph, purified: dict[str, torch.Tensor]) -> ItemGraph:
        """The item-item graphs the purified features propagate over (frozen here; built again after loading a
        checkpoint written before they were saved with the model)."""
        if not self.semantic.built:
            self.frozen_item_graphs(graph)
        return self.semantic

    def user_modality(self, graph: dgl.DGLGraph, item: torch.Tensor) -> torch.Tensor:
        """Eq. 10: ``sum_{i in N_u} h_i / sqrt(|N_u||N_i|)`` (``sym``, the stored weights) or the mean."""
        if self.config.user_modality == "mean":
            return user_mean(graph, item)
        return relation_propagate(graph, INTERACTED_BY_ETYPE, item)

    def modality_tokens(self, graph: dgl.DGLGraph) -> dict[str, torch.Tensor]:
        """``E_m = [E_u,m | E_i,m]`` (eqs. 9-10), users first, ``[|U| + |I|, d]`` per modality."""
        purified = self.purified(graph)
        semantic = self.semantic_graphs(graph, purified)
        tokens = {}
        for index, (m, item) in enumerate(purified.items()):
            for _ in range(self.config.item_layers):
                item = semantic.propagate(item, index)                                      # eq. 9
            tokens[m] = torch.cat([self.user_modality(graph, item), item])                 # eq. 10
        return tokens

    # -- eqs. 11-15 ----------------------------------------------------------------------------------------
    def fuse(self, tokens: dict[str, torch.Tensor], h_n: torch.Tensor, queries: torch.Tensor | None = None,
             users: torch.Tensor | None = None, items: torch.Tensor | None = None) -> torch.Tensor:
        """``E_mul`` of the ``queries`` tokens (all when None); ``h_n`` is their ``E_id`` (eqs. 11-15)."""
        views = [tokens[m] for m in self.modalities]
        if self.config.fusion_softmax == "modalities":
            if queries is not None:
                views = [v[queries] for v in views]
            alpha = torch.softmax(self.attention.scores(views), dim=1)                     # eq. 12
        else:  # each modality's weights sum to one over all users and items
            alpha = torch.softmax(self.attention.scores(views), dim=0)
            if queries is not None:
                views, alpha = [v[queries] for v in views], alpha[queries]
        common = weighted_sum(alpha, views)                                                 # eq. 13
        specific = sum(torch.sigmoid(self.prefer[m](h_n)) * (v - common)                   # eqs. 11, 14
                       for m, v in zip(self.modalities, views, strict=True))
        n = len(views)
        if self.config.fusion_mean == "with_common":
            return (common + specific) / (n + 1)                                            # eq. 15 (code)
        return common + specific / n                                                        # eq. 15

    # -- representations -------------------------------------------------------------------------------------
    def encode(self, graph: dgl.DGLGraph, users: torch.Tensor | None = None,
               items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The ID side ``h_n`` and the modality side ``h_m`` of the given users and items (all when None)."""
        user_n, item_n = self.ui_view(graph)
        tokens = self.modality_tokens(graph)
        if users is None or items is None:
            h_n = torch.cat([user_n, item_n])
            h_m = self.fuse(tokens, h_n)
            return {"user_n": user_n, "item_n": item_n, "user_m": h_m[: self.n_users],
                    "item_m": h_m[self.n_users:]}
        queries = torch.cat([users, items + self.n_users])
        h_n = torch.cat([user_n[users], item_n[items]])
        h_m = self.fuse(tokens, h_n, queries, users, items)
        n_u = len(users)
        return {"user_n": h_n[:n_u], "item_n": h_n[n_u:], "user_m": h_m[:n_u], "item_m": h_m[n_u:]}

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        """``e = h_n + h_m`` of all users and items; scores are inner products."""
        parts = self.encode(graph)
        return Representations(parts["user_n"] + parts["user_m"], parts["item_n"] + parts["item_m"])

    def training_forward(self, graph: dgl.DGLGraph, batch: Batch) -> dict[str, Any]:
        """``h_n`` and ``h_m`` of the batch's distinct users and items only (``cl_items="all"``: of all), with
        the index of every batch row among them."""
        if self.config.cl_items == "all":
            parts = self.encode(graph)
            parts["user_index"], parts["item_index"] = batch.users, torch.cat([batch.pos, batch.neg])
            return parts
        users, user_index = torch.unique(batch.users, return_inverse=True)
        items, item_index = torch.unique(torch.cat([batch.pos, batch.neg]), return_inverse=True)
        parts = self.encode(graph, users, items)
        parts["user_index"], parts["item_index"] = user_index, item_index
        return parts

    # -- loss ------------------------------------------------------------------------------------------------
    def batch_rows(self, output: dict[str, Any], batch: Batch) -> Rows:
        """``e = h_n + h_m`` of the batch's users, positive and negative items."""
        user_h = output["user_n"] + output["user_m"]
        item_h = output["item_n"] + output["item_m"]
        n_pos = len(batch.pos)
        pos_index, neg_index = output["item_index"][:n_pos], output["item_index"][n_pos:]
        return user_h[output["user_index"]], item_h[pos_index], item_h[neg_index]

    def l2_term(self, output: dict[str, Any], batch: Batch, rows: Rows) -> torch.Tensor | None:
        """L2 over every trainable parameter (``l2_on="all"``), the batch's final (code) or ego embeddings."""
        if self.config.l2_on == "all":
            return sum(p.pow(2).sum() for p in self.parameters() if p.requires_grad)
        if self.config.l2_on == "final":
            return l2_penalty(*rows)
        return super().l2_term(output, batch, rows)

    def model_terms(self, output: dict[str, Any], batch: Batch) -> dict[str, torch.Tensor]:
        """``cl_weight (L_users + L_items)``: InfoNCE between ``h_m`` and ``h_n`` (eq. 16)."""
        if self.config.cl_weight <= 0:
            return {}
        pos_index = output["item_index"][:len(batch.pos)]
        if self.config.cl_items == "all":
            users = items = slice(None)
        elif self.config.cl_distinct:
            users, items = slice(None), torch.unique(pos_index)  # the batch's distinct users / positive items
        else:
            users, items = output["user_index"], pos_index        # every batch row, repeats included
        return {"info": self.config.cl_weight * (
            self.info_nce(output["user_m"][users], output["user_n"][users])
            + self.info_nce(output["item_m"][items], output["item_n"][items]))}

    def info_nce(self, modal: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Eq. 16 averaged over rows: positives ``(h_m, h_n)`` of the same node, negatives the other rows' ``h_n``."""
        return info_nce(modal, ids, self.config.cl_temperature, same_view_negatives=False,
                        critic=self.config.cl_critic)
