"""Per-relation projections ``W_r x`` for many (row, relation) pairs, fast on CPU (KG attention).

:class:`RelationAttention` projects every edge's head and tail with ``dgl.ops.gather_mm``, which is slow
on CPU (``python benchmarks/bench_slifmr.py --projection``; figures in ``docs/benchmarks.md``).  :class:`RelationProjector` computes the same ``W_r x`` once per **distinct**
``(node, relation)`` pair (a KG's heads and tails repeat), sorted by relation so that each relation is one
contiguous BLAS ``mm`` (a loop over relation blocks, never over edges), and scatters back to the pairs.  The
sort/unique work depends only on the graph, so it is cached under a content key of the edge list and reused by every batch.
:class:`FastRelationAttention` is :class:`RelationAttention` with this projector; same parameters, same
values (``tests/test_slifmr.py`` checks it against the parent).
"""

from __future__ import annotations

import dgl
import torch
from dgl.ops import edge_softmax

from dglmm.nn.attention import RelationAttention


class PairPlan:
    """For pairs ``(node[e], rel[e])``: distinct pairs sorted by relation, block sizes, and the map back."""

    def __init__(self, nodes: torch.Tensor, rel: torch.Tensor, n_nodes: int, n_relations: int) -> None:
        key = rel.long() * n_nodes + nodes.long()
        distinct, self.inverse = torch.unique(key, sorted=True, return_inverse=True)  # sorted: by rel, then node
        self.nodes = distinct % n_nodes
        self.counts = torch.bincount(distinct // n_nodes, minlength=n_relations).tolist()


def relation_matmul(x: torch.Tensor, weights: torch.Tensor, plan: PairPlan) -> torch.Tensor:
    """``[W_{rel[e]} x_{node[e]}]_e`` (``weights``: ``[R, d, d_r]``) through the distinct pairs of ``plan``."""
    blocks = x[plan.nodes].split(plan.counts)
    projected = torch.cat([b @ weights[r] for r, b in enumerate(blocks) if len(b)])
    return projected[plan.inverse]


def typed_edges_key(graph: dgl.DGLGraph) -> tuple:
    """A content key of a typed edge list (sizes, endpoints, relation ids): O(E) reductions, no object id."""
    tails, heads = graph.edges()
    position = torch.arange(1, len(tails) + 1, device=tails.device, dtype=torch.float64)
    rel = graph.edata["rel"].double()
    return (graph.num_nodes(), graph.num_edges(), str(graph.device), float((tails.double() * position).sum()),
            float((heads.double() * position).sum()), float((rel * position).sum()))


class FastRelationAttention(RelationAttention):
    """:class:`RelationAttention` whose projections go through :func:`relation_matmul` (cached plans)."""

    def __init__(self, n_relations: int, dim: int, relation_dim: int) -> None:
        super().__init__(n_relations, dim, relation_dim)
        self._plans: tuple[tuple, tuple[PairPlan, int]] | None = None

    def _plan(self, graph: dgl.DGLGraph) -> tuple[PairPlan, int]:
        key = typed_edges_key(graph)
        if self._plans is None or self._plans[0] != key:
            tails, heads = graph.edges()
            rel = graph.edata["rel"].long()
            plan = PairPlan(torch.cat([tails, heads]), torch.cat([rel, rel]), graph.num_nodes(),
                            self.transform.shape[0])
            self._plans = (key, (plan, len(tails)))
        return self._plans[1]

    def forward(self, graph: dgl.DGLGraph, entity: torch.Tensor) -> torch.Tensor:
        plan, n_edges = self._plan(graph)
        projected = relation_matmul(entity, self.transform, plan)
        w_tail, w_head = projected[:n_edges], projected[n_edges:]
        rel = graph.edata["rel"].long()
        logits = (w_tail * torch.tanh(w_head + self.relation_emb[rel])).sum(-1)
        return edge_softmax(graph, logits)
