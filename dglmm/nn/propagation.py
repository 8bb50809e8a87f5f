"""Weighted message passing over relations of the dataset heterograph.

Two interchangeable backends compute ``h'_dst = sum_{(src, dst) in E_r} w_e h_src`` for a set of relations:

* ``"dgl"``: ``graph.multi_update_all`` with ``fn.u_mul_e`` (supports learnable edge weights);
* ``"csr"``: ``torch.sparse.mm`` on CSR matrices derived once from ``graph.adj_tensors('csr', etype)`` with a
  custom autograd that multiplies by the reverse relation's CSR in the backward pass (fixed weights only;
  about 2.5x faster on CPU, REFERENCE.md section 1).  ``tests/test_propagation.py`` proves both equal a dense
  normalised-adjacency product.
"""

from __future__ import annotations

import warnings

import dgl
import dgl.function as fn
import torch

from dglmm.graph.build import INTERACT_ETYPE, INTERACTED_BY_ETYPE

Etype = tuple[str, str, str]


def propagate(graph: dgl.DGLGraph, feats: dict[str, torch.Tensor], etypes: list[Etype],
              weight: str = "w") -> dict[str, torch.Tensor]:
    """One weighted-sum hop over ``etypes`` through ``multi_update_all`` (cross-type reducer ``sum``).

    Node types that receive no message are returned as zeros.
    """
    with graph.local_scope():
        for ntype, h in feats.items():
            graph.nodes[ntype].data["h"] = h
        funcs = {et: (fn.u_mul_e("h", weight, "m"), fn.sum("m", "h_out")) for et in etypes}
        graph.multi_update_all(funcs, "sum")
        out = {}
        for ntype, h in feats.items():
            data = graph.nodes[ntype].data
            out[ntype] = data["h_out"] if "h_out" in data else torch.zeros_like(h)
        return out


class _CSRMatMul(torch.autograd.Function):
    """``A @ x`` with A fixed: the gradient w.r.t. x is ``A^T @ grad``, with A^T given precomputed."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.a_t, grad)


def relation_csr(graph: dgl.DGLGraph, etype: Etype, weight: str = "w") -> torch.Tensor:
    """The ``[n_dst, n_src]`` CSR matrix of relation ``etype`` (rows receive messages) with weights ``weight``."""
    src_type, _, dst_type = etype
    # Rows must be destinations, so take the CSC of the relation: column pointers of dst are CSR rows.
    indptr, indices, eids = graph.adj_tensors("csc", etype=etype)
    values = graph.edges[etype].data[weight][eids.long()].detach()
    shape = (graph.num_nodes(dst_type), graph.num_nodes(src_type))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are tested
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(indptr.long(), indices.long(), values, size=shape)


class BipartiteCSR:
    """Fixed user<->item propagation with the CSR fast path, built once per graph object."""

    def __init__(self, graph: dgl.DGLGraph, forward: Etype, backward: Etype, weight: str = "w") -> None:
        self.graph = graph
        self.to_item = relation_csr(graph, forward, weight)    # [n_items, n_users]
        self.to_user = relation_csr(graph, backward, weight)   # [n_users, n_items]
        self.to_item_t = self._transpose(self.to_item)
        self.to_user_t = self._transpose(self.to_user)

    @staticmethod
    def _transpose(a: torch.Tensor) -> torch.Tensor:
        return a.to_sparse_coo().t().coalesce().to_sparse_csr()

    def __call__(self, user_h: torch.Tensor, item_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_user = _CSRMatMul.apply(self.to_user, self.to_user_t, item_h)
        new_item = _CSRMatMul.apply(self.to_item, self.to_item_t, user_h)
        return new_user, new_item


INTERACT: Etype = INTERACT_ETYPE
INTERACTED_BY: Etype = INTERACTED_BY_ETYPE


class UserItemPropagation(torch.nn.Module):
    """One hop over ``interact`` / ``interacted_by``.

    ``adjacency="sym"`` uses the stored ``edata['w']`` (``1/sqrt(d_u d_i)``, LightGCN); ``"rw_self_loops"``
    computes ``D^-1 (A + I)`` as the official LATTICE/MICRO code does (weights ``1/(d_dst + 1)`` plus a self
    term).  ``backend="dgl"`` uses :func:`propagate`; ``backend="csr"`` the fixed-weight CSR fast path.
    """

    def __init__(self, backend: str = "csr", adjacency: str = "sym") -> None:
        super().__init__()
        if backend not in ("dgl", "csr"):
            raise ValueError(f"unknown propagation backend {backend!r} (expected 'dgl' or 'csr')")
        if adjacency not in ("sym", "rw_self_loops"):
            raise ValueError(f"unknown adjacency {adjacency!r} (expected 'sym' or 'rw_self_loops')")
        self.backend = backend
        self.adjacency = adjacency
        self._csr: BipartiteCSR | None = None

    def forward(self, graph: dgl.DGLGraph, user_h: torch.Tensor,
                item_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = "w" if self.adjacency == "sym" else _self_loop_weights(graph)
        if self.backend == "dgl":
            out = propagate(graph, {"user": user_h, "item": item_h}, [INTERACT, INTERACTED_BY], weight)
            new_user, new_item = out["user"], out["item"]
        else:
            if self._csr is None or self._csr.graph is not graph:
                self._csr = BipartiteCSR(graph, INTERACT, INTERACTED_BY, weight)
            new_user, new_item = self._csr(user_h, item_h)
        if self.adjacency == "rw_self_loops":
            new_user = new_user + user_h / (graph.in_degrees(etype=INTERACTED_BY) + 1).to(user_h)[:, None]
            new_item = new_item + item_h / (graph.in_degrees(etype=INTERACT) + 1).to(item_h)[:, None]
        return new_user, new_item


def _self_loop_weights(graph: dgl.DGLGraph) -> str:
    """Store ``1 / (d_dst + 1)`` as ``edata['w_rw_self']`` on both relations (once per graph)."""
    name = "w_rw_self"
    for etype in (INTERACT, INTERACTED_BY):
        data = graph.edges[etype].data
        if name not in data:
            _, dst = graph.edges(etype=etype)
            deg = graph.in_degrees(etype=etype).float()
            data[name] = 1.0 / (deg[dst.long()] + 1.0)
    return name
