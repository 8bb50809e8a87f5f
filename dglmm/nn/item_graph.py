"""Item-item graphs as model state: one class for the learned kNN graph (LATTICE/MICRO eqs. 1-4), frozen kNN
graphs built from features (FREEDOM's, CAmgr/MGCN's semantic graphs) and the frozen relations of the heterograph
(TMFUN eq. 4), with the propagation ``h' = S h`` over each and over their weighted mixture.

An :class:`ItemGraph` holds ``R`` relations ``S_r`` over ``n_items`` items and propagates over one of them or
over ``sum_r mix_r S_r``.  Its relations come from one of two sources:

* **features** (:meth:`ItemGraph.rebuild`): cosine top-``k`` per modality (eqs. 1-2, chunked: never an
  ``n x n`` tensor), the items without a modality left without edges, weights the cosine (``values="cosine"``)
  or 1 (``"binary"``, FREEDOM's code), normalised by ``norm`` (``sym`` ``D^-1/2 S D^-1/2``, eq. 3 and FREEDOM;
  ``rw`` ``D^-1 S``, CAmgr eq. 12; ``none``).  ``fuse="before_norm"`` mixes the modalities into one relation by
  the ``mix`` given to :meth:`rebuild` and normalises the sum (LATTICE's learned graph); ``"after_norm"`` keeps one
  normalised relation per modality, mixed at propagation by the fixed ``weights`` of the constructor (FREEDOM's
  frozen graph, LATTICE's frozen one).  Built on a ``schedule``: ``frozen`` (once, by the model, without
  gradient), or, for a learned graph, the first batch of every epoch (``epoch``, LATTICE's code), every batch
  (``batch``) or the first batch of every N-th epoch (``every_n``), and from the current parameters in evaluation.
  Only the forward pass that rebuilt a learned graph carries gradient to the features through the edge weights;
  later batches reuse it detached.  The relations are the module's ``extra_state``: saved in ``state_dict()``
  (``checkpoint.pt``, ``best.pt``) and restored by ``load_state_dict``.
* **the heterograph** (:meth:`ItemGraph.follow`): the ``(item, similar_<m>, item)`` relations the graph builder
  made, re-read whenever the graph's content changes (:func:`dglmm.graph.cache.graph_key`); not saved.

Two propagation backends: ``"dgl"`` (``fn.u_mul_e`` + ``fn.sum``; needed for learned weights, which carry
gradient) and ``"csr"`` (:class:`~dglmm.nn.propagation.FixedSparse` per relation and one for the mixture,
the relations' edge lists concatenated with weights ``mix_r w_e``; fixed weights, about 1.4x faster per TMFUN
training step on CPU).  :func:`skip_connection` is eq. 5, the mix of a frozen and a learned graph's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dgl
import dgl.function as fn
import torch
from torch import nn

from dglmm.graph.cache import graph_key
from dglmm.graph.knn import NORMS, cosine_knn, drop_masked, normalize_edge_weights
from dglmm.nn.graph_state import GraphState
from dglmm.nn.propagation import FixedSparse

SCHEDULES = ("epoch", "batch", "every_n")
BACKENDS = ("csr", "dgl")
Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Etype = tuple[str, str, str]


class ItemGraph(nn.Module, GraphState):
    """Item-item relations ``S_r`` and their mixture; see the module docstring.

    ``k``: neighbours per item (features source); ``schedule``: ``frozen`` or one of :data:`SCHEDULES`;
    ``every``: N of ``every_n``; ``norm``: ``sym``, ``rw`` or ``none``; ``fuse``: ``before_norm`` or
    ``after_norm``; ``values``: ``cosine`` or ``binary``; ``weights``: the fixed ``mix_r`` of the relations'
    mixture; ``backend``: ``dgl`` or ``csr`` (fixed weights only).
    """

    def __init__(self, n_items: int, k: int = 10, schedule: str = "epoch", every: int = 1, norm: str = "sym",
                 fuse: str = "before_norm", values: str = "cosine", weights: torch.Tensor | None = None,
                 backend: str = "dgl") -> None:
        super().__init__()
        checks = {"schedule": (schedule, (*SCHEDULES, "frozen")), "norm": (norm, NORMS), "backend": (backend, BACKENDS),
                  "fuse": (fuse, ("before_norm", "after_norm")), "values": (values, ("cosine", "binary"))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.n_items, self.k, self.norm, self.schedule, self.every = n_items, k, norm, schedule, every
        self.fuse, self.values, self.backend = fuse, values, backend
        self.register_buffer("weights", None if weights is None else weights.detach().clone())
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # tracks the module's device
        self.relations: list[Edges] = []
        self._ops: list[Any] = []      # per relation (and the mixture): a dgl graph or a FixedSparse
        self._key: tuple | None = None
        self._epoch = 0
        self._due = True

    @property
    def weight(self) -> torch.Tensor | None:
        """The edge weights of the first relation (a learned graph has one)."""
        return self.relations[0][2] if self.relations else None

    @property
    def built(self) -> bool:
        return bool(self.relations)

    # -- schedule ---------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def on_batch_start(self, batch_index: int) -> None:
        if self.schedule == "batch":
            self._due = True
        elif batch_index == 0:
            every = self.every if self.schedule == "every_n" else 1
            self._due = self._due or self._epoch % every == 0
        else:
            self._due = False

    def refresh(self, features: Callable[[], tuple]) -> None:
        """Rebuild from ``features()`` when due (or in evaluation, or never built), else detach the weights;
        a frozen graph is rebuilt only when it was never built."""
        if not self.built or (self.schedule != "frozen" and (self._due or not self.training)):
            self.rebuild(*features())
            self._due = False
        elif self.schedule != "frozen":  # the same edges (and operators), the weights without their history
            self.relations = [(s, d, w.detach()) for s, d, w in self.relations]

    # -- sources ------------------------------------------------------------------------------------------
    def rebuild(self, features: list[torch.Tensor], mix: torch.Tensor | None = None,
                masks: list[torch.Tensor | None] | None = None) -> None:
        """Eqs. 1-3 on ``features`` (one tensor per modality); ``masks[m]`` (bool per item or None): items
        without that modality get no edge from it.  ``fuse="before_norm"``: the modalities mixed by ``mix``
        into one relation, then normalised; ``"after_norm"``: one normalised relation per modality."""
        masks = masks or [None] * len(features)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.schedule != "frozen"):
            edges = [drop_masked(*cosine_knn(x, self.k), mask) for x, mask in zip(features, masks, strict=True)]
            if self.values == "binary":
                edges = [(s, d, torch.ones_like(w)) for s, d, w in edges]
            if self.fuse == "before_norm":
                src = torch.cat([e[0] for e in edges])
                dst = torch.cat([e[1] for e in edges])
                sim = torch.cat([e[2] if mix is None else mix[m] * e[2] for m, e in enumerate(edges)])
                edges = [(src, dst, sim)]
            self._set([(s, d, normalize_edge_weights(s, d, w, self.n_items, self.norm)) for s, d, w in edges])

    def follow(self, graph: dgl.DGLGraph, etypes: list[Etype], weight: str = "w") -> ItemGraph:
        """The heterograph's relations ``etypes`` (weights ``edata[weight]``), re-read when their content changes."""
        key = graph_key(graph, etypes, (weight,))
        if self._key != key:
            self._set([(*graph.edges(etype=et), graph.edges[et].data[weight]) for et in etypes])
            self._key = key
        return self

    # -- propagation ----------------------------------------------------------------------------------------
    def _set(self, relations: list[Edges]) -> None:
        self.relations, n = relations, self.n_items
        if self.backend == "csr":
            self._ops = [FixedSparse(s, d, w, n, n) for s, d, w in relations]
            if self.weights is not None:
                self._ops.append(FixedSparse(torch.cat([r[0] for r in relations]), torch.cat([r[1] for r in relations]),
                                             torch.cat([m * r[2] for m, r in zip(self.weights, relations, strict=True)]),
                                             n, n))
        else:
            device = relations[0][2].device if relations else self._anchor.device
            self._ops = [dgl.graph((s, d), num_nodes=n, device=device) for s, d, _ in relations]

    def propagate(self, h: torch.Tensor, relation: int | None = 0) -> torch.Tensor:
        """``S_relation h``, or the mixture ``sum_r mix_r S_r h`` when ``relation`` is None."""
        if relation is None and self.backend == "csr":
            return self._ops[-1](h)
        if relation is None:
            return sum(m * self.propagate(h, r) for r, m in enumerate(self.weights))
        if self.backend == "csr":
            return self._ops[relation](h)
        graph = self._ops[relation]
        with graph.local_scope():
            graph.ndata["h"] = h
            graph.edata["w"] = self.relations[relation][2]
            graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
            return graph.ndata["h"]

    # -- state: a graph built from features is saved and restored with the parameters --------------------------
    def get_extra_state(self) -> dict:
        state: dict[str, Any] = {"epoch": self._epoch, "due": self._due}
        if self.built and self._key is None:
            relations = [tuple(t.detach().cpu() for t in r) for r in self.relations]
            if len(relations) == 1:  # one relation (a learned graph): its edges and weights as they were saved
                state.update(zip(("src", "dst", "weight"), relations[0], strict=True))
            else:
                state["relations"] = relations
        return state

    def set_extra_state(self, state: dict) -> None:
        self._epoch, self._due = int(state["epoch"]), bool(state["due"])
        device = self._anchor.device
        relations = state.get("relations") or ([(state["src"], state["dst"], state["weight"])] if "src" in state else [])
        self._key = None
        if relations:
            self._set([tuple(t.to(device) for t in r) for r in relations])
        else:
            self.relations, self._ops = [], []

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        state_dict.setdefault(prefix + "_extra_state", {"epoch": 0, "due": True})  # saved before it existed
        super()._load_from_state_dict(state_dict, prefix, *args)

    def bind(self, device: torch.device) -> None:
        """The relations and their operators on ``device`` (:class:`~dglmm.nn.graph_state.GraphState`)."""
        if self.built and self.relations[0][2].device != torch.device(device):
            self._set([tuple(t.to(device) for t in r) for r in self.relations])


def skip_connection(frozen: torch.Tensor, learned: torch.Tensor | float, lam: float) -> torch.Tensor:
    """``lambda * S~ h + (1 - lambda) * A~ h`` (eq. 5 applied to a signal)."""
    return lam * frozen + (1.0 - lam) * learned
