"""Fixed item-item graphs (frozen kNN relations) and weighted mixtures of them, propagated fast.

``FrozenItemGraphs(etypes, weights)`` propagates item vectors over each relation ``S_r`` (``h' = S_r h``) and
over the frozen fusion ``sum_r weights[r] S_r`` (TMFUN eq. 4, FREEDOM's frozen graph) with two backends:
``"dgl"`` (``fn.u_mul_e`` + ``fn.sum`` per relation inside ``local_scope``) and ``"csr"`` (the relations'
CSR matrices derived once per graph content (``relation_fingerprint``) from ``graph.adj_tensors``, the mixture summed into ONE sparse
matrix, ``torch.sparse.mm`` with the transpose precomputed for the backward pass; about 4x faster on CPU).
``tests/test_tmfun.py`` proves both equal a dense product.
"""

from __future__ import annotations

import warnings

import dgl
import dgl.function as fn
import torch

from dglmm.nn.propagation import BipartiteCSR, _CSRMatMul, relation_csr, relation_fingerprint

Etype = tuple[str, str, str]


def _relation_dgl(graph: dgl.DGLGraph, etype: Etype, h: torch.Tensor) -> torch.Tensor:
    with graph.local_scope():
        graph.nodes[etype[0]].data["h"] = h
        graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h_out"), etype=etype)
        return graph.nodes[etype[2]].data["h_out"]


class FrozenItemGraphs(torch.nn.Module):
    """Propagation over fixed relations ``S_r`` and over their frozen mixture ``sum_r w_r S_r``."""

    def __init__(self, etypes: list[Etype], weights: torch.Tensor, backend: str = "csr") -> None:
        super().__init__()
        self.etypes = list(etypes)
        self.register_buffer("weights", weights.detach().clone())
        self.backend = backend
        self._key: tuple | None = None
        self._csr: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _matrices(self, graph: dgl.DGLGraph) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(S_r, S_r^T) per relation, then (mixture, mixture^T); rebuilt when the relations' content changes."""
        key = relation_fingerprint(graph, self.etypes)
        if self._key != key:
            mats = [relation_csr(graph, et) for et in self.etypes]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                parts = [float(w) * m.to_sparse_coo() for w, m in zip(self.weights, mats, strict=True)]
                mixed = parts[0]
                for part in parts[1:]:
                    mixed = mixed + part
                mixed = mixed.coalesce().to_sparse_csr()
                self._csr = [(m, BipartiteCSR._transpose(m)) for m in [*mats, mixed]]
            self._key = key
        return self._csr

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor, relation: int | None = None) -> torch.Tensor:
        """``S_relation h``, or the mixture ``sum_r w_r S_r h`` when ``relation`` is None."""
        if self.backend == "dgl":
            if relation is not None:
                return _relation_dgl(graph, self.etypes[relation], h)
            return sum(w * _relation_dgl(graph, et, h) for w, et in zip(self.weights, self.etypes, strict=True))
        a, a_t = self._matrices(graph)[len(self.etypes) if relation is None else relation]
        return _CSRMatMul.apply(a, a_t, h)
