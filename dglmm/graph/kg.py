"""The knowledge graph of the heterograph as one homogeneous graph of typed edges (KGAT, SLIF-MR).

KG attention layers (``dglmm.nn.attention.RelationAttention``) score every triple of every relation in one
pass, so they want all KG edges in one edge list with a relation id per edge rather than one edge type per
relation.  :func:`knowledge_graph` builds that view: nodes are the items (``0..n_items-1``), then the
non-item entities, then (for KGAT's collaborative knowledge graph) the users; an edge ``s -> d`` means ``d``
aggregates from ``s``.  Every heterograph KG relation keeps its id ``r``; its reverse edge type gets ``r + R``
(KGAT adds inverse relations as new relations); with ``users=True`` the training interactions are two more
relations (``interact`` user -> item and ``interacted_by`` item -> user); ``extra`` adds item-item relations
of the heterograph (SLIF-MR's ``correlate``), one id each, after those.  :func:`prune_triples` is the
degree-sensitive pruning (SLIF-MR eq. 6) of that view, a triple and its reverse edge kept or dropped together.
"""

from __future__ import annotations

from typing import NamedTuple

import dgl
import torch

from dglmm.graph.ops import degree_weights, prune_edges
from dglmm.graph.schema import ENTITY, INTERACT_ETYPE, INTERACTED_BY_ETYPE, ITEM, USER

Etype = tuple[str, str, str]


class KnowledgeGraph(NamedTuple):
    """A homogeneous typed-edge view of the heterograph's KG (``graph.edata['rel']``)."""

    graph: dgl.DGLGraph
    n_relations: int            # relation ids 0..n_relations-1 (forward, reverse, interaction, extra)
    offsets: dict[str, int]     # first node id of each node type: item 0, entity n_items, user after entities
    relation_names: list[str]


def knowledge_graph(graph: dgl.DGLGraph, n_kg_relations: int, relation_names: list[str] | None = None,
                    users: bool = False, extra: tuple[Etype, ...] = ()) -> KnowledgeGraph:
    """The KG (plus interactions when ``users``, plus ``extra`` item-item relations) as one typed edge list."""
    n_items, n_entities = graph.num_nodes(ITEM), graph.num_nodes(ENTITY) if ENTITY in graph.ntypes else 0
    offsets = {ITEM: 0, ENTITY: n_items, USER: n_items + n_entities}
    names = list(relation_names or [str(r) for r in range(n_kg_relations)])
    names += ["rev_" + n for n in names]
    srcs, dsts, rels = [], [], []

    def add(etype: Etype, rel: torch.Tensor | int) -> None:
        s, d = graph.edges(etype=etype)
        srcs.append(s.long() + offsets[etype[0]])
        dsts.append(d.long() + offsets[etype[2]])
        rels.append(rel if isinstance(rel, torch.Tensor) else torch.full_like(s.long(), rel))

    for etype in graph.canonical_etypes:
        data = graph.edges[etype].data
        if "rel" in data:
            add(etype, data["rel"].long() + n_kg_relations * data["reversed"].long())
    n_relations = 2 * n_kg_relations
    if users:
        add(INTERACT_ETYPE, n_relations)
        add(INTERACTED_BY_ETYPE, n_relations + 1)
        names += ["interact", "interacted_by"]
        n_relations += 2
    for etype in extra:
        add(etype, n_relations)
        names.append(etype[1])
        n_relations += 1
    n_nodes = offsets[USER] + (graph.num_nodes(USER) if users else 0)
    empty = torch.zeros(0, dtype=torch.long, device=graph.device)
    src = torch.cat(srcs) if srcs else empty
    dst = torch.cat(dsts) if dsts else empty
    kg = dgl.graph((src, dst), num_nodes=n_nodes, device=graph.device)
    kg.edata["rel"] = torch.cat(rels) if rels else empty
    return KnowledgeGraph(kg, n_relations, offsets, names)


def prune_triples(kg: dgl.DGLGraph, n_kg_relations: int, ratio: float, generator: torch.Generator) -> dgl.DGLGraph:
    """``kg`` (a :func:`knowledge_graph` view without users) with a share ``ratio`` of its KG triples dropped,
    keep weight ``1/sqrt(d_head d_tail)`` (:func:`~dglmm.graph.ops.prune_edges`, SLIF-MR eq. 6); a triple's
    forward and reverse edges go together, and the ``extra`` relations' edges all stay."""
    src, dst = kg.edges()
    rel = kg.edata["rel"].long()
    is_kg = rel < 2 * n_kg_relations
    reverse = (rel >= n_kg_relations) & is_kg
    head = torch.where(reverse, dst, src)
    tail = torch.where(reverse, src, dst)
    n = kg.num_nodes()
    key = (rel % max(1, n_kg_relations)) * n * n + head * n + tail
    triples, inverse = torch.unique(torch.where(is_kg, key, torch.full_like(key, -1)), return_inverse=True)
    t_head = torch.zeros_like(triples).scatter_(0, inverse, head)
    t_tail = torch.zeros_like(triples).scatter_(0, inverse, tail)
    real = triples >= 0
    kept_real = torch.zeros(int(real.sum()), dtype=torch.bool, device=src.device)
    kept_real[prune_edges(degree_weights(t_head[real], t_tail[real], n), ratio, generator).to(src.device)] = True
    kept = torch.zeros(len(triples), dtype=torch.bool, device=src.device)
    kept[real] = kept_real
    keep = torch.nonzero(kept[inverse] | ~is_kg).squeeze(1)
    return dgl.edge_subgraph(kg, keep, relabel_nodes=False, store_ids=False)
