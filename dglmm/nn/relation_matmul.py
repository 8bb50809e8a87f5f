"""Per-relation projections ``W_r x`` for many (row, relation) pairs, fast on CPU (KG attention).

:class:`RelationAttention` projects every edge's head and tail with ``dgl.ops.gather_mm``, which is slow
on CPU (``python benchmarks/bench_slifmr.py --projection``; figures in ``docs/performance.md``).  :class:`RelationProjector` computes the same ``W_r x`` once per **distinct**
``(node, relation)`` pair (a KG's heads and tails repeat), sorted by relation so that each relation is one
contiguous BLAS ``mm`` (a loop over relation blocks, never over edges), and scatters back to the pairs.  The
sort/unique work depends only on the graph, so it is cached under a content key of the edge list and reused by every batch.
:class:`FastRelationAttention` is :class:`RelationAttention` with this projector and a fused per-triple score;
same parameters, same values and gradients (``tests/nn/test_relation_matmul.py`` checks it against the parent).
"""

from __future__ import annotations

import dgl
import torch
from dgl.ops import edge_softmax

from dglmm.graph.cache import graph_key
from dglmm.nn.attention import RelationAttention


class PairPlan:
    """For pairs ``(node[e], rel[e])``: distinct pairs sorted by relation, block sizes, and the map back."""

    def __init__(self, nodes: torch.Tensor, rel: torch.Tensor, n_nodes: int, n_relations: int) -> None:
        key = rel.long() * n_nodes + nodes.long()
        distinct, self.inverse = torch.unique(key, sorted=True, return_inverse=True)  # sorted: by rel, then node
        self.nodes = distinct % n_nodes
        self.counts = torch.bincount(distinct // n_nodes, minlength=n_relations).tolist()


def project_pairs(x: torch.Tensor, weights: torch.Tensor, plan: PairPlan,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """``W_r x_node (+ b_r)`` for each distinct pair of ``plan`` (``weights``: ``[R, d, d_r]``, ``bias``:
    ``[R, d_r]``), one ``mm`` per relation block.  ``index_select`` (not ``x[...]``): its backward is an
    ``index_add_``, several times faster on CPU than the accumulating ``index_put_`` of advanced indexing; the
    bias is broadcast per block, so it needs no per-pair gather either.  A Python loop over relation blocks,
    because ``dgl.ops.segment_mm`` is about 18x slower on CPU (dgl 2.1)."""
    blocks = x.index_select(0, plan.nodes).split(plan.counts)
    w = weights.unbind(0)  # one unbind: its backward stacks one [R, d, d_r] gradient (``weights[r]`` makes R)
    if bias is None:
        return torch.cat([b @ w[r] for r, b in enumerate(blocks) if len(b)])
    b_r = bias.unbind(0)
    return torch.cat([torch.addmm(b_r[r], b, w[r]) for r, b in enumerate(blocks) if len(b)])


def gather_project(x: torch.Tensor, weights: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """``[x_i @ weights[rel_i]]_i`` (``weights``: ``[R, d, d_r]``): the values of ``dgl.ops.gather_mm(x, weights,
    idx_b=rel)``, computed as dgl does on CPU when ``d`` or ``d_r`` exceeds 8 (rows sorted by ``torch.sort(rel)``, one ``mm`` per relation block,
    rows put back), but with ``weights`` unbound once: dgl's CPU ``segment_mm`` takes ``weights[r]`` per block,
    whose backward fills and adds a whole ``[R, d, d_r]`` zero tensor for each of the R blocks.  For a batch of
    rows that are not a graph's fixed edge list (TransR's triples); other devices use dgl's kernel."""
    if x.device.type != "cpu":
        return dgl.ops.gather_mm(x, weights, idx_b=rel)
    if len(rel) == 0:
        return x.new_zeros(0, weights.shape[2])
    sorted_rel, perm = torch.sort(rel)
    counts = torch.bincount(sorted_rel, minlength=weights.shape[0]).tolist()
    blocks = x.index_select(0, perm).split(counts)
    w = weights.unbind(0)
    out = torch.cat([b @ w[r] for r, b in enumerate(blocks) if len(b)])
    back = torch.empty_like(perm)
    back[perm] = torch.arange(len(perm), device=perm.device)
    return out.index_select(0, back)


def relation_matmul(x: torch.Tensor, weights: torch.Tensor, plan: PairPlan) -> torch.Tensor:
    """``[W_{rel[e]} x_{node[e]}]_e`` (``weights``: ``[R, d, d_r]``) through the distinct pairs of ``plan``."""
    return project_pairs(x, weights, plan).index_select(0, plan.inverse)


class FastRelationAttention(RelationAttention):
    """:class:`RelationAttention` computed on the distinct ``(node, relation)`` pairs, without per-edge vectors.

    Tails and heads have a pair plan each (:class:`PairPlan`, one BLAS block per relation): ``W_r e_t`` is
    projected once per distinct tail pair and ``tanh(W_r e_h + e_r)`` once per distinct head pair (a KG's head
    and tail pairs are mostly disjoint, so the ``tanh`` runs on the heads only), and
    ``pi(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r)`` is one fused DGL ``u_dot_v`` (SDDMM) over a bipartite
    graph from tail pairs to head pairs with one edge per triple, so no ``[E, d_r]`` tensor is built (forward
    or backward).  The plans and the pair graph are cached under a content key of the edge list.
    """

    def __init__(self, n_relations: int, dim: int, relation_dim: int) -> None:
        super().__init__(n_relations, dim, relation_dim)
        self._plans: tuple[tuple, tuple[PairPlan, PairPlan, dgl.DGLGraph]] | None = None

    def _plan(self, graph: dgl.DGLGraph) -> tuple[PairPlan, PairPlan, dgl.DGLGraph]:
        """The tail and head pair plans and the pair graph (tail pair -> head pair, one edge per triple, in edge
        order)."""
        key = graph_key(graph, data=("rel",))
        if self._plans is None or self._plans[0] != key:
            tails, heads = graph.edges()
            rel = graph.edata["rel"].long()
            n_nodes, n_rel = graph.num_nodes(), self.transform.shape[0]
            tail_plan, head_plan = PairPlan(tails, rel, n_nodes, n_rel), PairPlan(heads, rel, n_nodes, n_rel)
            pairs = dgl.heterograph({("tail", "triple", "head"): (tail_plan.inverse, head_plan.inverse)},
                                    {"tail": len(tail_plan.nodes), "head": len(head_plan.nodes)},
                                    device=graph.device)
            self._plans = (key, (tail_plan, head_plan, pairs))
        return self._plans[1]

    def forward(self, graph: dgl.DGLGraph, entity: torch.Tensor) -> torch.Tensor:
        tail_plan, head_plan, pairs = self._plan(graph)
        tail_term = project_pairs(entity, self.transform, tail_plan)                           # W_r e_t
        head_term = torch.tanh(project_pairs(entity, self.transform, head_plan, self.relation_emb))
        logits = dgl.ops.u_dot_v(pairs, tail_term, head_term).squeeze(-1)
        return edge_softmax(graph, logits)
