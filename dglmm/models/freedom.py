"""FREEDOM (Zhou & Shen, MM'23, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation"): a frozen item-item graph from the raw features and a degree-pruned user-item graph.

The computation, with the paper's equation numbers (section 3):

* **Frozen item-item graph** (eqs. 1-4): per modality ``m``, the cosine top-k graph of the raw features (the
  heterograph's ``similar_<m>`` relation: ``graph.knn_k`` neighbours, the item itself a candidate, chunked),
  made binary (eq. 2: ``S^m_ij = 1`` for the top-k), normalised ``D^-1/2 S^m D^-1/2`` with ``D`` the row
  sums (eq. 3; each row has ``k`` entries, so every weight is ``1/k`` as in the official code), then mixed
  ``S = sum_m alpha_m S^m`` (eq. 4).  Built once, never updated ("frozen").
* **Degree-sensitive edge pruning** (eq. 5): every training interaction ``(u, i)`` gets the keep weight
  ``p = 1/sqrt(d_u) 1/sqrt(d_i)`` (degrees of the full graph); ``(1 - rho) |E|`` interactions are drawn without
  replacement with probabilities proportional to ``p`` (:func:`dglmm.graph.ops.pruned_interactions`,
  vectorised exponential race = ``torch.multinomial``), and the kept graph is normalised on its own degrees
  (eq. 6).  Resampled at every epoch start (the official ``pre_epoch_processing``); training only: evaluation
  uses the full graph.  The draw is a function of ``(prune_seed, epoch)`` (a private generator), so it is
  never stored and ``--resume`` re-derives exactly the graph an uninterrupted run used.
* **Propagation** (eqs. 7-11): ``h~ = S^L_ii e_i`` from the item ID embeddings (eqs. 7-8, ``item_layers``
  hops); LightGCN on the pruned graph, the mean of layers ``0..L_ui`` (eqs. 9-10, ``ui_layers``);
  ``h_u = e_u``, ``h_i = e_i + h~_i`` (eq. 11).  ``y_ui = h_u^T h_i``.
* **Loss** (eqs. 12-13): ``L = L_bpr(h_u, h_i, h_j) + lambda sum_m L_bpr(h_u, x~^m_i, x~^m_j)`` with the
  projected features ``x~^m = W_m x^m + b_m`` (in the user space, ``embedding_dim``); the term is logged as
  ``modality_bpr``.  The official code has no L2 term; ``reg_weight`` (default 0) adds LightGCN's L2 on the
  batch's ID embeddings.

Readings where the paper is vague, as options (defaults = the official code, ``enoche/FREEDOM``, which MMRec's
port repeats line for line):

* ``item_graph_weights``: ``binary`` (eq. 2, official) or ``cosine`` (the heterograph's similarity weights
  ``D^-1/2 S D^-1/2`` as LATTICE's frozen graph, ``graph.knn_norm``).
* ``image_weight``: ``alpha`` of the ``image`` modality (official ``mm_image_weight`` 0.1); the other modalities
  share ``1 - alpha`` equally (with image and text this is the official mix; with image and audio, TikTok,
  audio takes the text slot's 0.9).  Without an ``image`` modality the weights are equal.
* ``trainable_features``: the official code fine-tunes the raw features (``nn.Embedding.from_pretrained(...,
  freeze=False)``) through the modality BPR term; the frozen graph is built from the initial features.
* ``prune_schedule``: ``epoch`` (official), ``once`` (one pruned graph for the whole run) or ``none``.
* The number kept is ``round((1 - rho) |E|)`` (the official code truncates: at most one edge apart).
* ``prune_seed``: None derives the seed from the run's seed (through the global RNG when the model is built);
  it is saved in checkpoints.

Defaults are the paper's and the official config's: ``k`` = 10 (``graph.knn_k``), ``alpha_v`` = 0.1,
``L_ui`` = 2, ``L_ii`` = 1, 64-d embeddings and projections.  The paper grid-searches ``rho`` in {0.8, 0.9}
and ``lambda`` in {0, 1e-5, 1e-4, 1e-3} (MMRec's FREEDOM.yaml) without a single best value for all data:
the defaults 0.8 and 1e-4 are points of that grid, and the grid is the options' search space for ``dglmm tune``.
"""

from __future__ import annotations

import dataclasses

import dgl
import torch

from dglmm.data.dataset import Dataset
from dglmm.graph.cache import graph_key
from dglmm.graph.knn import normalize_edge_weights
from dglmm.graph.ops import interaction_graph, pruned_interactions, pruning_generator
from dglmm.graph.schema import INTERACT_ETYPE
from dglmm.models.base import Batch, ModelConfig, Recommender, Representations, register
from dglmm.nn.item_graph import ItemGraph
from dglmm.nn.losses import bpr_loss
from dglmm.nn.modality import ModalityInputs
from dglmm.nn.propagation import UserItemPropagation, layer_mean
from dglmm.options import MAX_LAYERS, Above, Categorical, OptionError, option

_PRUNING = {"prune_schedule": ("epoch", "once")}


@dataclasses.dataclass
class FREEDOMConfig(ModelConfig):
    reg_weight: float = option(0.0, "L2 weight on the batch's ID embeddings (the paper and the official code have "
                               "none: 0)", low=0.0)
    modalities: list[str] | None = option(None, "modalities of the frozen graph and the modality BPR (None: all "
                                          "the graph has)")
    ui_layers: int = option(2, "L_ui: LightGCN layers on the pruned user-item graph (eqs. 9-10; official 2)",
                            low=0, high=MAX_LAYERS)
    item_layers: int = option(1, "L_ii: hops on the frozen item-item graph (eqs. 7-8; official 1)", low=0,
                              high=MAX_LAYERS)
    item_graph_weights: str = option("binary", "S^m of eq. 2: 'binary' top-k (paper, official code) or the graph's "
                                     "'cosine' weights (LATTICE's frozen graph)", choices=("binary", "cosine"),
                                     reading=True)
    image_weight: float = option(0.1, "alpha of the image modality in eq. 4 (official mm_image_weight); the others "
                                 "share 1 - alpha equally", low=0.0, high=1.0)
    prune_ratio: float = option(0.8, "rho: share of the training interactions dropped (eq. 5; searched over the "
                                "paper's grid {0.8, 0.9})", low=0.0, high=1.0, high_open=True,
                                space=Categorical((0.8, 0.9)), active_when=_PRUNING)
    prune_schedule: str = option("epoch", "resample the pruned graph every 'epoch' (official), 'once', or 'none'",
                                 choices=("epoch", "once", "none"), reading=True)
    prune_seed: int | None = option(None, "seed of the pruning draws (None: drawn from the run's seed); with the "
                                    "epoch it re-derives every pruned graph", low=0, active_when=_PRUNING)
    modality_bpr_weight: float = option(1e-4, "lambda of eq. 13: weight of the BPR terms on projected features "
                                        "(official reg_weight; searched over its grid {0, 1e-5, 1e-4, 1e-3})",
                                        low=0.0, space=Categorical((0.0, 1e-5, 1e-4, 1e-3)))
    trainable_features: bool = option(True, "fine-tune the raw features through the modality BPR (official code) "
                                      "or keep them fixed (with 4096-d features Adam's update of the whole matrix "
                                      "makes an epoch about 3x longer)", active_when={"modality_bpr_weight": Above(0.0)},
                                      reading=True)
    backend: str = option("csr", "propagation: 'csr' (torch.sparse, fixed weights) or 'dgl' (message passing)",
                          choices=("csr", "dgl"))

    def check_options(self, section: str = "model") -> None:
        """``modalities``, when given, names at least one modality, each once."""
        if self.modalities is not None and (not self.modalities or len(set(self.modalities)) < len(self.modalities)):
            raise OptionError(f"{section}.modalities must name at least one modality, each once; got {self.modalities}")


def modality_weights(names: list[str], image_weight: float) -> torch.Tensor:
    """``alpha_m`` of eq. 4: ``image_weight`` for ``image``, the rest shared equally (equal without image)."""
    if "image" not in names or len(names) == 1:
        return torch.full((len(names),), 1.0 / len(names))
    rest = (1.0 - image_weight) / (len(names) - 1)
    return torch.tensor([image_weight if m == "image" else rest for m in names])


@register
class FREEDOM(Recommender):
    """FREEDOM (MM'23): LightGCN on a degree-pruned user-item graph plus one frozen modality-mixed item graph.

    The equations, the official code's choices and the options are in the module docstring.
    """

    name = "freedom"
    Config = FREEDOMConfig
    needs_modalities = True

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: FREEDOMConfig) -> None:
        super().__init__(dataset, graph, config)
        self.add_id_tables(config.embedding_dim)
        self.inputs = ModalityInputs(graph, config.modalities, config.embedding_dim,               # W_m, x^m
                                     config.trainable_features and config.modality_bpr_weight > 0, relations=True)
        self.modalities = self.inputs.names
        alpha = modality_weights(self.modalities, config.image_weight)
        self.item_graph = ItemGraph(self.n_items, schedule="frozen", weights=alpha, backend=config.backend)  # eq. 4
        for m, etype in zip(self.modalities, self.inputs.etypes, strict=True):                 # eqs. 2-3
            self.register_buffer(f"binary_w_{m}", binary_knn_weights(graph, etype), persistent=False)
        seed = config.prune_seed if config.prune_seed is not None else int(torch.randint(2**31 - 1, ()))
        self.register_buffer("prune_seed", torch.tensor(seed, dtype=torch.long))
        self.train_propagation = UserItemPropagation(config.backend)   # the pruned graph's CSR, rebuilt per draw
        self.eval_propagation = UserItemPropagation(config.backend)    # the full graph's, built once
        self._epoch = 0
        self._pruned: tuple[tuple, dgl.DGLGraph] | None = None

    def on_epoch_start(self, epoch: int, graph: dgl.DGLGraph) -> None:
        self._epoch = epoch

    # -- the two graphs --------------------------------------------------------------------------------------
    def prune_stream(self) -> int | None:
        """The pruning draw of this pass: None (evaluation, or no pruning), else the epoch (or 0 for ``once``)."""
        if not self.training or self.config.prune_schedule == "none" or self.config.prune_ratio == 0:
            return None
        return self._epoch if self.config.prune_schedule == "epoch" else 0

    def user_item_graph(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        """The graph LightGCN runs on: ``A_rho`` of this epoch (eqs. 5-6) in training, the full one otherwise."""
        stream = self.prune_stream()
        if stream is None:
            return graph
        key = (graph_key(graph, [INTERACT_ETYPE]), int(self.prune_seed), stream)
        if self._pruned is None or self._pruned[0] != key:
            gen = pruning_generator(int(self.prune_seed), stream)
            users, items = pruned_interactions(graph, self.config.prune_ratio, gen)
            self._pruned = (key, interaction_graph(users, items, graph))
        return self._pruned[1]

    def item_propagate(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        """``S^L h`` over the frozen mixture ``S = sum_m alpha_m S^m`` (eqs. 4, 7-8)."""
        with graph.local_scope():
            if self.config.item_graph_weights == "binary":
                for m, etype in zip(self.modalities, self.inputs.etypes, strict=True):
                    graph.edges[etype].data["w"] = getattr(self, f"binary_w_{m}")
            item_graph = self.item_graph.follow(graph, self.inputs.etypes)
            for _ in range(self.config.item_layers):
                h = item_graph.propagate(h, None)
        return h

    # -- the contract -------------------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:
        ui = self.user_item_graph(graph)
        propagation = self.eval_propagation if ui is graph else self.train_propagation
        user, item = layer_mean(propagation, ui, self.user_emb.weight, self.item_emb.weight,
                                self.config.ui_layers)                                          # eqs. 9-10
        item = item + self.item_propagate(graph, self.item_emb.weight)                         # eq. 11
        return Representations(user, item, {"graph": graph})

    def model_terms(self, output: Representations, batch: Batch) -> dict[str, torch.Tensor]:
        """``lambda sum_m L_bpr(h_u, x~^m_i, x~^m_j)`` (eq. 13); only the batch's items are projected."""
        if self.config.modality_bpr_weight <= 0 or not len(batch.users):
            return {}
        return {"modality_bpr": self.config.modality_bpr_weight * self.modality_bpr(output, batch)}

    def modality_bpr(self, output: Representations, batch: Batch) -> torch.Tensor:
        """``sum_m L_bpr(h_u, x~^m_i, x~^m_j)`` on the batch's triples, before ``lambda``."""
        user = output.user[batch.users]
        items = torch.cat([batch.pos, batch.neg])
        total = user.new_zeros(())
        for m in self.modalities:  # one term per modality (two or three), not per item
            x = self.inputs.project(output.extras["graph"], m, rows=items)
            pos, neg = x.split(len(batch.pos))
            total = total + bpr_loss((user * pos).sum(-1), (user * neg).sum(-1))
        return total


def binary_knn_weights(graph: dgl.DGLGraph, etype: tuple[str, str, str]) -> torch.Tensor:
    """Eqs. 2-3 on one kNN relation: ``1/sqrt(d_i d_j)`` of its 0/1 adjacency, ``d`` = row sums (``1/k``)."""
    src, dst = graph.edges(etype=etype, order="eid")
    ones = torch.ones(len(src), device=src.device)
    return normalize_edge_weights(src, dst, ones, graph.num_nodes("item"), "sym")
