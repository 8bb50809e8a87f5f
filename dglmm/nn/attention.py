"""Attention blocks shared by the models.

* :class:`ModalityAttention` + :func:`weighted_sum`: a softmax over views of ``q^T tanh(W h + b)`` per node
  (MICRO eqs. 7-8 and 14-15, MGCN's modality-shared part; item-level view attention in general).
* :func:`edge_attention`: attention per edge of one relation, normalised over each destination's in-edges
  with ``edge_softmax`` and aggregated with ``fn.u_mul_e`` + ``fn.sum``: dot-product scores (``fn.u_dot_v``,
  a scaled dot-product attention restricted to the graph) or additive scores (``fn.u_add_v`` + LeakyReLU,
  GAT).  :class:`GATLayer` is GAT (Velickovic et al., ICLR'18, eqs. 1-4; CAmgr eqs. 7-8) over a set of
  relations.
* :class:`RelationAttention`: KGAT's knowledge-aware attention (Wang et al., KDD'19, eqs. 4-5),
  ``pi(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r)`` softmax-normalised over each head's triples, for every
  relation at once from a typed edge list (no loop over relations).
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch
import torch.nn.functional as F
from dgl.ops import edge_softmax
from torch import nn

Etype = tuple[str, str, str]
SCORES = ("dot", "additive")


class ModalityAttention(nn.Module):
    """``alpha^m_i = softmax_m(q^T tanh(W h^m_i + b))`` (MICRO eq. 7); parameters shared by all views."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, 1, bias=False)

    def scores(self, views: list[torch.Tensor]) -> torch.Tensor:
        """The logits ``q^T tanh(W h^m_i + b)`` before the softmax, ``[n, |views|]``."""
        return torch.cat([self.query(torch.tanh(self.project(v))) for v in views], 1)

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self.scores(views), dim=1)  # [n, |views|]


def weighted_sum(weights: torch.Tensor, views: list[torch.Tensor]) -> torch.Tensor:
    """``sum_m weights[:, m] * views[m]`` (MICRO eqs. 8 and 15); ``weights`` is ``[n, |views|]``."""
    return sum(weights[:, m:m + 1] * v for m, v in enumerate(views))


def edge_attention(graph: dgl.DGLGraph, etype: Etype, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, score: str = "dot", scale: float | None = None,
                   negative_slope: float = 0.2, return_weights: bool = False):
    """Attention over the in-edges of each destination of relation ``etype``.

    ``score="dot"``: ``e_(s,d) = key_s . query_d / scale`` (``scale`` defaults to ``sqrt(dim)``);
    ``score="additive"``: ``e_(s,d) = LeakyReLU(key_s + query_d)`` with ``key``/``query`` the per-node terms
    ``a_l^T W h_s`` and ``a_r^T W h_d`` (``[n, 1]`` or ``[n, heads]``; GAT eq. 3).  Then
    ``alpha = edge_softmax(e)`` over each destination's in-edges and the output is
    ``h'_d = sum_s alpha_(s,d) value_s`` (``[n_dst, ...]``; zeros for destinations without in-edges).
    With ``return_weights`` also returns ``alpha`` per edge (edge-id order).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    src_type, _, dst_type = etype
    with graph.local_scope():
        graph.nodes[src_type].data["k"] = key
        graph.nodes[dst_type].data["q"] = query
        graph.nodes[src_type].data["v"] = value
        if score == "dot":
            graph.apply_edges(fn.u_dot_v("k", "q", "e"), etype=etype)
            logits = graph.edges[etype].data["e"] / (scale if scale is not None else key.shape[-1] ** 0.5)
        else:
            graph.apply_edges(fn.u_add_v("k", "q", "e"), etype=etype)
            logits = F.leaky_relu(graph.edges[etype].data["e"], negative_slope)
        alpha = edge_softmax(graph[etype], logits)
        graph.edges[etype].data["a"] = alpha if alpha.dim() == value.dim() else alpha.unsqueeze(-1)
        graph.update_all(fn.u_mul_e("v", "a", "m"), fn.sum("m", "h_out"), etype=etype)
        out = graph.nodes[dst_type].data["h_out"]
        return (out, alpha) if return_weights else out


class GATLayer(nn.Module):
    """One GAT layer over relations ``etypes``: ``h'_n = sigma(sum_{j in N(n)} alpha_nj W h_j)`` (CAmgr eq. 7)
    with ``alpha_nj = softmax_j(LeakyReLU(a^T [W h_n | W h_j]))`` (eq. 8), ``a = [a_dst | a_src]``.

    ``N(n)`` is a node's in-edges over all of ``etypes`` together (one ``edge_softmax`` over the heterograph,
    then ``multi_update_all``): with self-loop relations among them (``user -> user``, ``item -> item``), a node
    attends to itself as well as to its neighbours, as in GAT's own definition of ``N_i``.  ``W`` and ``a`` are
    shared by all relations.  ``activation`` is applied to the aggregated messages (``relu`` in CAmgr; ``none``
    leaves them linear).  ``transform``: ``learned`` ``W`` (Xavier-initialised) or ``identity`` (``W = I``, not
    trained: the layer only attends; needs ``dim_in == dim_out``).
    """

    def __init__(self, dim_in: int, dim_out: int, negative_slope: float = 0.2, activation: str = "relu",
                 transform: str = "learned") -> None:
        super().__init__()
        if activation not in ("relu", "none"):
            raise ValueError(f"activation must be 'relu' or 'none', got {activation!r}")
        if transform not in ("learned", "identity") or (transform == "identity" and dim_in != dim_out):
            raise ValueError(f"transform must be 'learned' or 'identity' (dim_in == dim_out), got {transform!r}")
        self.linear = nn.Linear(dim_in, dim_out, bias=False) if transform == "learned" else nn.Identity()
        self.attn_src = nn.Parameter(torch.empty(dim_out, 1))
        self.attn_dst = nn.Parameter(torch.empty(dim_out, 1))
        for p in (*self.linear.parameters(), self.attn_src, self.attn_dst):
            nn.init.xavier_uniform_(p)
        self.negative_slope = negative_slope
        self.activation = activation

    def forward(self, graph: dgl.DGLGraph, feats: dict[str, torch.Tensor],
                etypes: list[Etype]) -> dict[str, torch.Tensor]:
        """``feats``: node type -> ``[n, dim_in]``; returns node type -> ``[n, dim_out]`` for every destination."""
        etypes = [graph.to_canonical_etype(e) for e in etypes]
        sub = graph if len(etypes) == len(graph.canonical_etypes) else graph.edge_type_subgraph(etypes)
        with sub.local_scope():
            for ntype in sub.ntypes:
                wh = self.linear(feats[ntype])
                sub.nodes[ntype].data.update({"wh": wh, "el": wh @ self.attn_src, "er": wh @ self.attn_dst})
            logits = {}
            for etype in etypes:  # one per relation (two for a user-item graph), not per edge
                sub.apply_edges(fn.u_add_v("el", "er", "e"), etype=etype)
                logits[etype] = F.leaky_relu(sub.edges[etype].data["e"], self.negative_slope)
            alpha = edge_softmax(sub, logits) if len(etypes) > 1 else {etypes[0]: edge_softmax(sub, logits[etypes[0]])}
            for etype in etypes:
                sub.edges[etype].data["a"] = alpha[etype]
            sub.multi_update_all({e: (fn.u_mul_e("wh", "a", "m"), fn.sum("m", "h")) for e in etypes}, "sum")
            out = {nt: sub.nodes[nt].data["h"] for nt in {e[2] for e in etypes}}
        return {k: F.relu(v) if self.activation == "relu" else v for k, v in out.items()}


class RelationAttention(nn.Module):
    """KGAT's relation-aware attention (KDD'19 eqs. 4-5) on a homogeneous graph of typed triples.

    ``graph`` is a homogeneous DGL graph over all KG nodes (items first, then entities) whose edges are the
    triples ``(h, r, t)`` as ``t -> h`` (messages flow from tails to heads) with ``edata['rel']`` the relation id.
    ``pi(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r)``; ``W_r`` and ``e_r`` are gathered per edge from
    ``[n_relations, d, d_r]`` / ``[n_relations, d_r]`` tables (``gather_mm``) so every relation is scored in one pass.
    Returns the attention ``pi`` softmax-normalised over each head's triples (eq. 5), one value per edge.
    """

    def __init__(self, n_relations: int, dim: int, relation_dim: int) -> None:
        super().__init__()
        self.relation_emb = nn.Parameter(torch.empty(n_relations, relation_dim))
        self.transform = nn.Parameter(torch.empty(n_relations, dim, relation_dim))
        nn.init.xavier_uniform_(self.relation_emb)
        nn.init.xavier_uniform_(self.transform)

    def project(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``W_r e`` for each (entity row, relation id) pair: ``[E, d_r]`` (TransR's projection).

        ``dgl.ops.gather_mm`` multiplies each row by its relation's matrix without materialising ``[E, d, d_r]``.
        """
        return dgl.ops.gather_mm(entity, self.transform, idx_b=relation)

    def forward(self, graph: dgl.DGLGraph, entity: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[n_edges]`` for all triples of ``graph`` given node embeddings ``entity``."""
        tails, heads = graph.edges()
        rel = graph.edata["rel"].long()
        w_tail = self.project(entity[tails.long()], rel)
        w_head = self.project(entity[heads.long()], rel)
        logits = (w_tail * torch.tanh(w_head + self.relation_emb[rel])).sum(-1)
        return edge_softmax(graph, logits)

    @staticmethod
    def aggregate(graph: dgl.DGLGraph, entity: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``e_N(h) = sum_{(h, r, t)} pi(h, r, t) e_t`` (KGAT eq. 3) with the weights of :meth:`forward`."""
        with graph.local_scope():
            graph.ndata["e"] = entity
            graph.edata["a"] = weights.unsqueeze(-1)
            graph.update_all(fn.u_mul_e("e", "a", "m"), fn.sum("m", "n"))
            return graph.ndata["n"]
