"""An edge type a model adds to the heterograph during training, kept as module state.

SLIF-MR's self-loop graph update (SGE, eqs. 16-18) adds ``(item, correlate, item)`` edges built from the fused
item representations every few epochs.  :class:`AddedRelation` holds those edges and their weights as the
module's ``extra_state`` (saved in checkpoints and ``best.pt``, restored by ``--resume`` and ``dglmm
evaluate``) and returns the dataset heterograph with the relation added (:func:`dglmm.graph.build.add_edge_type`,
edge data ``w``).  The augmented graph is cached under a content key: the base graph's relations (a cheap
fingerprint of their sizes and endpoints) and a counter of the edge sets this module was given.
"""

from __future__ import annotations

import dgl
import torch
from torch import nn

from dglmm.graph.build import add_edge_type
from dglmm.graph.cache import graph_key
from dglmm.nn.graph_state import GraphState


class AddedRelation(nn.Module, GraphState):
    """Edges of one relation ``etype`` that a model derives during training; see the module docstring."""

    def __init__(self, etype: tuple[str, str, str]) -> None:
        super().__init__()
        self.etype = etype
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # tracks the module's device
        self.src: torch.Tensor | None = None
        self.dst: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.version = 0
        self._cache: tuple[tuple, dgl.DGLGraph] | None = None

    @property
    def built(self) -> bool:
        return self.src is not None

    def set(self, src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor) -> None:
        """Replace the relation's edges (``src -> dst``) and weights (detached: the structure is not learned)."""
        device = self._anchor.device
        self.src, self.dst = src.detach().long().to(device), dst.detach().long().to(device)
        self.weight = weight.detach().to(device)
        self.version += 1

    def bind(self, device: torch.device) -> None:
        """The edges and weights on ``device`` (:class:`~dglmm.nn.graph_state.GraphState`)."""
        if self.built and self.src.device != torch.device(device):
            self.src, self.dst, self.weight = self.src.to(device), self.dst.to(device), self.weight.to(device)
            self._cache = None

    def attach(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        """``graph`` with the relation added (or ``graph`` itself while no edges were set)."""
        if not self.built:
            return graph
        key = (self.version, graph_key(graph))
        if self._cache is None or self._cache[0] != key:
            augmented = add_edge_type(graph, self.etype, self.src, self.dst, {"w": self.weight.to(graph.device)})
            self._cache = (key, augmented)
        return self._cache[1]

    def get_extra_state(self) -> dict:
        if not self.built:
            return {"version": self.version}
        return {"version": self.version, "src": self.src.cpu(), "dst": self.dst.cpu(), "weight": self.weight.cpu()}

    def set_extra_state(self, state: dict) -> None:
        if "src" in state:
            self.set(state["src"], state["dst"], state["weight"])
        else:
            self.src = self.dst = self.weight = None
        self.version = int(state["version"])
        self._cache = None
