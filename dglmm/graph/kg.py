"""The knowledge graph of the heterograph as one homogeneous graph of typed edges (KGAT, SLIF-MR).

KG attention layers (``dglmm.nn.attention.RelationAttention``) score every triple of every relation in one
pass, so they want all KG edges in one edge list with a relation id per edge rather than one edge type per
relation.  :func:`knowledge_graph` builds that view: nodes are the items (``0..n_items-1``), then the
non-item entities, then (for KGAT's collaborative knowledge graph) the users; an edge ``s -> d`` means ``d``
aggregates from ``s``.  Every heterograph KG relation keeps its id ``r``; its reverse edge type gets ``r + R``
(KGAT adds inverse relations as new relations); with ``users=True`` the training interactions are two more
relations (``interact`` user -> item and ``interacted_by`` item -> user); ``extra`` adds item-item relations
of the heterograph (SLIF-MR's ``correlate``), one id each, after those.
"""

from __future__ import annotations

from typing import NamedTuple

import dgl
import torch

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
