"""Heterograph construction, kNN sparsification and normalisation, and the on-disk graph cache."""

from dglmm.graph.build import (
    ENTITY,
    INTERACT_ETYPE,
    INTERACTED_BY_ETYPE,
    ITEM,
    REVERSE_PREFIX,
    USER,
    GraphConfig,
    add_edge_type,
    build_graph,
    graph_meta,
    graph_summary,
    kg_relation_etypes,
    similar_etype,
)
from dglmm.graph.cache import default_cache_dir, graph_cache_key
from dglmm.graph.knn import KnnEdges, cosine_knn, knn_graph_edges, normalize_edge_weights, symmetrize

__all__ = [
    "ENTITY", "INTERACT_ETYPE", "INTERACTED_BY_ETYPE", "ITEM", "REVERSE_PREFIX", "USER", "GraphConfig",
    "KnnEdges", "add_edge_type", "build_graph", "cosine_knn", "default_cache_dir", "graph_cache_key",
    "graph_meta", "graph_summary", "kg_relation_etypes", "knn_graph_edges", "normalize_edge_weights",
    "similar_etype", "symmetrize",
]
