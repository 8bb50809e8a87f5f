"""KGAT (Wang et al., KDD'19): knowledge graph attention over the collaborative knowledge graph.

The computation, with the paper's equation numbers:

* **Collaborative knowledge graph** (section 2.3): users, items and KG entities in one graph whose relations are
  every KG relation, its inverse, and the training interactions as two more relations (``interact`` and its
  reverse), the view :func:`dglmm.graph.kg.knowledge_graph` builds from the heterograph.
* **TransR embedding** (eqs. 1-2): ``g(h, r, t) = ||W_r e_h + e_r - W_r e_t||^2`` and
  ``L_KG = mean softplus(g(h, r, t) - g(h, r, t'))`` over triples with a corrupted tail ``t'``, plus the
  official code's L2 of the projected embeddings (``kg_reg_weight``).
* **Attentive propagation** (eqs. 3-5): ``e_N(h) = sum_(h,r,t) pi(h, r, t) e_t`` with
  ``pi = softmax_t((W_r e_t)^T tanh(W_r e_h + e_r))`` over each head's triples
  (:class:`dglmm.nn.relation_matmul.FastRelationAttention`: ``W_r e`` once per distinct (node, relation)
  pair, one BLAS block per relation; the same values and gradients as ``RelationAttention``'s ``gather_mm``).
* **Aggregators** (eqs. 6-8): ``bi`` (bi-interaction, default) ``LeakyReLU(W_1 (e_h + e_N)) +
  LeakyReLU(W_2 (e_h * e_N))``, ``gcn`` ``LeakyReLU(W (e_h + e_N))``, ``graphsage`` ``LeakyReLU(W [e_h | e_N])``.
* **High-order propagation and prediction** (eqs. 9-12): L layers with message dropout, each layer's output
  L2-normalised (official code; ``layer_norm="none"``: as eq. 11 is printed), all layers concatenated, score
  ``e_u^T e_i``.
* **Optimisation** (eq. 13): BPR on the concatenated embeddings + ``reg_weight`` L2 of the batch's final
  embeddings (official); ``L_KG`` trained by alternation: every epoch runs all CF batches, then the KG
  batches (``kg_schedule="alternate"``, the official Algorithm), or adds ``L_KG`` to each CF batch (``joint``).
  The TransR batches hold ``kg_batch_size`` triples each, ``n_triples // kg_batch_size + 1`` of them per epoch
  (2048: the PyTorch port LunaBlack/KGAT-pytorch; 0: as many batches as CF batches, each about
  ``n_triples / n_CF_batches``; with ``joint``, one KG batch is drawn per CF batch either way).  The official
  code runs ``n_triples // 2048 + 1`` batches (``n_A_batch``) but draws ``n_KG_triples // (n_train //
  batch_size)`` heads in each (its loader overrides ``--batch_size_kg``), a combination no value gives.
  The alternation steps the two losses with two Adam optimisers, as the official code (``opt``, ``opt2``;
  ``kg_optimizer="separate"``), or with one (``shared``), whose moment estimates then mix both losses.

Readings and official-code behaviour that are options (defaults in brackets): ``attention`` [``epoch``: as the
paper's algorithm and the PyTorch port, ``pi`` is recomputed over the whole graph after every epoch without
gradient and kept as module state (the official code means to, but its propagation keeps the initial matrix,
``none``: ``update_attentive_A`` rebinds a Python attribute the compiled TensorFlow graph never reads); ``batch``: recomputed in every forward pass with gradient from the CF loss (the paper's reading);
``none``: the per-relation mean ``1/|N_r(h)|`` summed over relations, the official initial matrix (KGAT w/o
Att)], ``kg_loss`` [true; false: KGAT w/o KGE], ``kg_sampling`` [``head``: heads uniform, then one of their
triples (official); ``edge``: triples uniform], ``layer_sizes`` [64, 32, 16], ``message_dropout`` [0.1].
The official code evaluates on the test set every 10 epochs and stops after 10 evaluations without a better
test Recall@20; dglmm stops and selects on validation (``train.patience``).

``bias_init`` [``xavier``: the aggregator biases drawn like the official ``b_gc``/``b_bi``, Xavier over ``[1, d_out]``;
``zero``].  ``embedding_init`` [``per_table``: Xavier bounds from the user table and the entity table apart, as the official
``user_embed``/``entity_embed``; ``one_table``: one bound for all rows, the earlier dglmm default].

``pretrain`` [None] is the official ``--pretrain -1``: the user embeddings and the items' rows of the entity
embeddings start from a trained BPR-MF (here a dglmm MF run folder or its ``best.pt``, read with
``weights_only=True`` by :func:`dglmm.models.mf.load_mf_embeddings`; shapes checked against the dataset and
``embedding_dim``); the other entities, relations, TransR and aggregator weights are initialised as without it
(the same random draws for a given seed).  It is applied by :meth:`KGAT.load_pretrained` when training starts
from scratch, never over a ``--resume`` checkpoint and not by ``dglmm evaluate``.  Not implemented: node
dropout (commented out in the official code).  Both are documented in ``docs/models/kgat.md``.
"""

from __future__ import annotations

import dataclasses

import dgl
import torch
import torch.nn.functional as F
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.data.sampler import KGTripleSampler
from dglmm.graph.kg import knowledge_graph
from dglmm.graph.schema import USER
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, Rows, register
from dglmm.models.mf import load_mf_embeddings
from dglmm.nn.attention import RelationAttention
from dglmm.nn.init import BIAS_INITS, init_linear
from dglmm.nn.losses import l2_penalty
from dglmm.nn.propagation import FixedSparse
from dglmm.nn.relation_matmul import FastRelationAttention, gather_project
from dglmm.options import MAX_DIM, Categorical, LogUniform, Uniform, check_size, option

AGGREGATORS = ("bi", "gcn", "graphsage")
_KG_LOSS = {"kg_loss": (True,)}  # where the TransR options act


@dataclasses.dataclass
class KGATConfig(ModelConfig):
    reg_weight: float = option(1e-5, "L2 weight on the batch's final user/item embeddings (official 1e-5; searched "
                               "over the paper's grid {1e-5, ..., 1e-1}, parameter settings)", low=0.0,
                               space=Categorical((1e-5, 1e-4, 1e-3, 1e-2, 1e-1)))
    layer_sizes: list[int] = option([64, 32, 16], "output size of each propagation layer (official [64, 32, 16])",
                                    low=1, high=MAX_DIM)
    relation_dim: int = option(64, "dimension d_r of relation embeddings and of the TransR space", low=1, high=MAX_DIM)
    aggregator: str = option("bi", "eqs. 6-8: bi-interaction, gcn or graphsage", choices=AGGREGATORS)
    message_dropout: float = option(0.1, "dropout on each layer's output (official 0.1; searched over the paper's "
                                    "grid {0.0, 0.1, ..., 0.8}, parameter settings)", low=0.0, high=1.0,
                                    space=Uniform(0.0, 0.8, step=0.1))
    attention: str = option("epoch", "pi recomputed after each 'epoch' without gradient (paper's "
                            "algorithm, PyTorch port), every forward with gradient ('batch'), or 'none' (the "
                            "initial per-relation mean: w/o Att, and what official runs propagate with)",
                            choices=("epoch", "batch", "none"), reading=True)
    layer_norm: str = option("l2", "each propagated layer before eq. 11's concatenation: 'l2'-normalised (official "
                             "code) or 'none' (eq. 11 as printed)", choices=("l2", "none"), reading=True)
    kg_loss: bool = option(True, "train the TransR loss L_KG (false: KGAT w/o KGE)")
    kg_schedule: str = option("alternate", "'alternate': all CF batches, then the TransR batches, every epoch "
                              "(official); 'joint': L_KG added to each CF batch", choices=("alternate", "joint"),
                              active_when=_KG_LOSS, reading=True)
    kg_optimizer: str = option("separate", "alternate schedule: the TransR phase stepped by an Adam of its own "
                               "('separate', official opt2) or by the CF one ('shared')",
                               choices=("separate", "shared"),
                               active_when={**_KG_LOSS, "kg_schedule": ("alternate",)}, reading=True)
    kg_batch_size: int = option(2048, "TransR batch size, n_triples // size + 1 batches per epoch (2048: the "
                                "PyTorch port; the official code runs n_triples // 2048 + 1 batches of "
                                "n_KG_triples // (n_train // batch_size) heads); 0: as many batches as CF "
                                "batches. Cost on Book-Crossing: the TransR phase is half of an epoch of about "
                                "55x MF's (benchmarks/bench_kgat.py)", low=0, active_when=_KG_LOSS)
    kg_sampling: str = option("head", "KG batch: heads uniform then a triple ('head', official) or triples uniform",
                              choices=("head", "edge"), active_when=_KG_LOSS, reading=True)
    kg_reg_weight: float = option(1e-5, "L2 weight on the projected TransR embeddings (official 1e-5; searched over "
                                  "the documented range 1e-6..1e-3)", low=0.0, space=LogUniform(1e-6, 1e-3),
                                  active_when=_KG_LOSS)
    bias_init: str = option("xavier", "aggregator biases: 'xavier' over [1, d_out] (official b_gc/b_bi) or 'zero'",
                            choices=BIAS_INITS, reading=True)
    embedding_init: str = option("per_table", "xavier bounds of the layer-0 embeddings: users and entities as two "
                                 "tables ('per_table', official) or as 'one_table'",
                                 choices=("per_table", "one_table"), reading=True)
    pretrain: str | None = option(None, "a dglmm MF run folder (or its best.pt) whose user/item embeddings "
                                  "initialise KGAT's (official --pretrain -1; of an MF run with several seeds, "
                                  "the one trained with this run's train.seed); None: xavier init")


class Aggregator(nn.Module):
    """One KGAT layer's aggregator ``f(e_h, e_N(h))`` (eqs. 6-8)."""

    def __init__(self, kind: str, dim_in: int, dim_out: int, bias_init: str = "xavier") -> None:
        super().__init__()
        self.kind = kind
        self.w1 = init_linear(nn.Linear(2 * dim_in if kind == "graphsage" else dim_in, dim_out), bias_init)
        self.w2 = init_linear(nn.Linear(dim_in, dim_out), bias_init) if kind == "bi" else None

    def forward(self, ego: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        if self.kind == "graphsage":
            return F.leaky_relu(self.w1(torch.cat([ego, side], 1)), 0.2)               # eq. 7
        out = F.leaky_relu(self.w1(ego + side), 0.2)                                   # eq. 6 (gcn)
        if self.kind == "bi":
            out = out + F.leaky_relu(self.w2(ego * side), 0.2)                         # eq. 8
        return out


@register
class KGAT(Recommender):
    """KGAT (KDD'19): attentive propagation over users, items and KG entities, relations trained with TransR."""

    name = "kgat"
    Config = KGATConfig
    needs_kg = True

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: KGATConfig) -> None:
        super().__init__(dataset, graph, config)
        kg = knowledge_graph(graph, dataset.n_relations, dataset.relation_names, users=True)
        self.user_offset = kg.offsets[USER]
        self.n_nodes = kg.graph.num_nodes()
        src, dst = kg.graph.edges()
        self.register_buffer("edge_src", src.long(), persistent=False)
        self.register_buffer("edge_dst", dst.long(), persistent=False)
        self.register_buffer("edge_rel", kg.graph.edata["rel"].long(), persistent=False)
        self.n_relations = kg.n_relations
        self.embedding = nn.Embedding(self.n_nodes, config.embedding_dim)
        self._init_embedding()
        self.relation_attention = FastRelationAttention(kg.n_relations, config.embedding_dim, config.relation_dim)
        sizes = [config.embedding_dim, *config.layer_sizes]
        self.aggregators = nn.ModuleList(Aggregator(config.aggregator, a, b, config.bias_init)
                                         for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.dropout = nn.Dropout(config.message_dropout)
        self.register_buffer("attention_weights", self._mean_weights())     # pi, updated after each epoch
        self._kg_graph: dgl.DGLGraph | None = None
        self._fixed: tuple[tuple, FixedSparse] | None = None

    def _init_embedding(self) -> None:
        """Xavier-uniform layer-0 embeddings: the user rows and the entity rows (items first) as two tables, as
        the official ``user_embed`` and ``entity_embed`` (``embedding_init="per_table"``), or as one table
        (``one_table``), whose bound ``sqrt(6 / (n_users + n_entities + d))`` is several times smaller for users."""
        weight = self.embedding.weight
        if self.config.embedding_init == "one_table":
            nn.init.xavier_uniform_(weight)
            return
        with torch.no_grad():
            nn.init.xavier_uniform_(weight[self.user_offset:])
            nn.init.xavier_uniform_(weight[:self.user_offset])

    def load_pretrained(self, seed: int | None = None) -> None:
        """Official ``--pretrain -1``: users' and items' layer-0 embeddings copied from the MF run
        ``config.pretrain`` (items are the first entity rows, users the last rows; of an MF run with several
        seeds, the one trained with ``seed``); nothing when it is None."""
        if self.config.pretrain is None:
            return
        user, item = load_mf_embeddings(self.config.pretrain, self.n_users, self.n_items, self.config.embedding_dim,
                                         seed=seed)
        with torch.no_grad():
            weight = self.embedding.weight
            weight[:self.n_items] = item.to(weight)
            weight[self.user_offset:] = user.to(weight)

    # -- the collaborative KG ------------------------------------------------------------------------------
    def kg_graph(self) -> dgl.DGLGraph:
        """The typed edge list (messages ``t -> h``) on the module's device (:meth:`bind_graphs`), built once."""
        if self._kg_graph is None:
            self._kg_graph = dgl.graph((self.edge_src, self.edge_dst), num_nodes=self.n_nodes)
            self._kg_graph.edata["rel"] = self.edge_rel
        return self._kg_graph

    def bind_graphs(self, device: torch.device) -> None:
        super().bind_graphs(device)
        if self._kg_graph is not None:
            self._kg_graph = self._kg_graph.to(device)

    def _mean_weights(self) -> torch.Tensor:
        """``sum_r 1/|N_r(h)|`` per edge: the official initial (and ``attention="none"``) propagation matrix."""
        key = self.edge_dst * self.n_relations + self.edge_rel
        _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse].float()

    def attention(self) -> torch.Tensor:
        """``pi(h, r, t)`` per edge (eqs. 4-5) according to ``config.attention``."""
        if self.config.attention == "batch":
            return self.relation_attention(self.kg_graph(), self.embedding.weight)
        return self.attention_weights

    def on_epoch_end(self, epoch: int, graph: dgl.DGLGraph) -> None:
        """The official update of the attentive matrix after every epoch (no gradient)."""
        if self.config.attention == "epoch":
            with torch.no_grad():
                self.attention_weights = self.relation_attention(self.kg_graph(), self.embedding.weight)

    # -- propagation (eqs. 3-12) ---------------------------------------------------------------------------------
    def neighbourhood(self):
        """``e -> e_N`` (eq. 3): DGL message passing when ``pi`` carries gradient (``attention="batch"``), else
        the CSR fast path, rebuilt when the attention weights change (keyed on their storage and version)."""
        if self.config.attention == "batch":
            kg, weights = self.kg_graph(), self.attention()
            return lambda ego: RelationAttention.aggregate(kg, ego, weights)
        w = self.attention_weights
        key = (w.data_ptr(), w._version, str(w.device))
        if self._fixed is None or self._fixed[0] != key:
            self._fixed = (key, FixedSparse(self.edge_src, self.edge_dst, w, self.n_nodes, self.n_nodes))
        return self._fixed[1]

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        aggregate = self.neighbourhood()
        ego = self.embedding.weight
        layers = [ego]
        for aggregator in self.aggregators:
            side = aggregate(ego)                                                      # eq. 3
            ego = self.dropout(aggregator(ego, side))                                 # eqs. 6-8, message dropout
            layers.append(F.normalize(ego, dim=1) if self.config.layer_norm == "l2" else ego)  # official code
        out = torch.cat(layers, 1)                                                     # eq. 11
        return Representations(out[self.user_offset:], out[:self.n_items])

    def training_forward(self, graph: dgl.DGLGraph, batch: Batch) -> Representations | None:
        """No propagation for a KG-only batch (the TransR phase reads layer-0 embeddings only)."""
        return self(graph) if len(batch.users) else None

    # -- losses -----------------------------------------------------------------------------------------------
    def l2_term(self, output: Representations, batch: Batch, rows: Rows) -> torch.Tensor:
        """L2 of the batch's final (concatenated) embeddings, as the official code (BPR is eq. 12)."""
        return l2_penalty(*rows)

    def model_terms(self, output: Representations | None, batch: Batch) -> dict[str, torch.Tensor]:
        """``L_KG`` (eq. 2) on the batch's KG triples, if any (a TransR phase batch, or every batch with joint)."""
        return self.transr_loss(*batch.extras["kg"]) if "kg" in batch.extras else {}

    def transr_loss(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                    t_neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_KG`` (eq. 2) with ``g(h, r, t) = ||W_r e_h + e_r - W_r e_t||^2`` (eq. 1) plus its L2 term."""
        emb, weights = self.embedding.weight, self.relation_attention.transform
        h_e, t_e, n_e = (gather_project(emb[x], weights, r) for x in (h, t, t_neg))
        r_e = self.relation_attention.relation_emb[r]
        pos = (h_e + r_e - t_e).pow(2).sum(1)
        neg = (h_e + r_e - n_e).pow(2).sum(1)
        terms = {"transr": F.softplus(pos - neg).mean()}
        if self.config.kg_reg_weight > 0:
            terms["kg_l2"] = self.config.kg_reg_weight * l2_penalty(h_e, r_e, t_e, n_e)
        return terms

    def extra_samplers(self, dataset: Dataset, batch_size: int, seed: int) -> dict[str, KGTripleSampler]:
        """KG triples of the collaborative KG.  ``kg_batch_size`` > 0: batches of that size, ``n_triples //
        kg_batch_size + 1`` of them per epoch (the official ``n_A_batch``); 0: as many batches as CF batches,
        together about one pass over the triples."""
        if not self.config.kg_loss:
            return {}
        n_cf_batches = -(-len(dataset.train) // batch_size)
        n_triples = len(self.edge_src)
        check_size("model.kg_batch_size", self.config.kg_batch_size, n_triples, "KG triples",
                   type(self.config).kg_batch_size)
        if self.config.kg_batch_size > 0:
            kg_batch, n_kg_batches = self.config.kg_batch_size, n_triples // self.config.kg_batch_size + 1
        else:
            kg_batch, n_kg_batches = max(1, n_triples // n_cf_batches), n_cf_batches
        sampler = KGTripleSampler(
            self.edge_dst.cpu().numpy(), self.edge_rel.cpu().numpy(), self.edge_src.cpu().numpy(), self.n_nodes,
            batch_size=kg_batch, n_batches=n_kg_batches, seed=seed,
            mode=self.config.kg_sampling, phase=self.config.kg_schedule == "alternate",
            own_optimizer=self.config.kg_optimizer == "separate")
        return {"kg": sampler}
