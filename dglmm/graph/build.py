"""The dataset heterograph: users, items and KG entities with interaction, kNN and KG relations.

Schema (canonical edge types)::

    (user, interact, item), (item, interacted_by, user)     TRAIN pairs only; edata 'w'
    (item, similar_<m>, item)                                per modality m; edata 'sim' (cosine), 'w'
    (stype, <relation name>, dtype), (dtype, rev_<name>, stype)
                                                             per KG relation and (stype, dtype) pair in
                                                             {item, entity}^2; edata 'rel', 'reversed'

Item node data ``feat_<m>`` holds the raw features.  Entity node ``e`` is KG node ``n_items + e``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import dgl
import numpy as np
import torch
from torch import Tensor

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.graph.cache import FORMAT_VERSION, graph_cache_key, load_graph, resolve_cache_dir, save_graph
from dglmm.graph.knn import NORMS, check_neighbours, knn_graph_edges
from dglmm.graph.ops import degree_weights
from dglmm.graph.schema import (  # noqa: F401 - the schema's names stay importable from the builder
    ENTITY,
    INTERACT,
    INTERACT_ETYPE,
    INTERACTED_BY,
    INTERACTED_BY_ETYPE,
    ITEM,
    REVERSE_PREFIX,
    USER,
    CanonicalEtype,
    similar_etype,
)
from dglmm.options import option, validate

META_ATTR = "dglmm_meta"

EdgeDict = dict[CanonicalEtype, tuple[Tensor, Tensor]]
EdataDict = dict[CanonicalEtype, dict[str, Tensor]]


@dataclass
class GraphConfig:
    """Everything that shapes the heterograph (all fields enter the cache key)."""

    knn_k: int = option(10, "neighbours per item in each modality's kNN graph (MICRO eq. 2)", low=1)
    knn_keep_self: bool = option(True, "the item is a candidate neighbour of itself (as the LATTICE code)")
    knn_symmetric: bool = option(False, "use S + S^T (duplicates merged by max) instead of the directed top-k")
    knn_norm: str = option("sym", "kNN weight: 'sym' D^-1/2 S D^-1/2 (eq. 3), 'rw' D^-1 S, 'none' raw S",
                           choices=NORMS)
    modalities: list[str] | None = option(None, "modalities that get a kNN graph (None = all the dataset has)")
    include_kg: bool = option(True, "add the KG relations as edge types")
    kg_reverse: bool = option(True, "add a rev_<relation> edge type for every KG relation")
    store_features: bool = option(True, "keep raw features as item node data feat_<modality>")
    chunk_size: int = option(1024, "rows of the similarity matrix computed at a time", low=1)
    interaction_norm: str = option("sym", "interact weight: 'sym' 1/sqrt(d_u d_i) (LightGCN) or 'none' (1)",
                                   choices=("sym", "none"))


def build_graph(dataset: Dataset, config: GraphConfig | None = None,
                cache_dir: str | Path | bool | None = None) -> dgl.DGLGraph:
    """Build (or load from the on-disk cache) the heterograph of ``dataset``; see the module docstring.

    ``cache_dir``: ``None`` uses ``$DGLMM_CACHE`` or ``~/.cache/dglmm/graphs``; ``False`` disables caching.
    """
    config = config or GraphConfig()
    validate(config, "graph")  # a GraphConfig made directly in Python gets the checks of a YAML one
    modalities = _resolve_modalities(dataset, config)
    if modalities:
        check_neighbours(config.knn_k, dataset.n_items, "graph.knn_k", GraphConfig.knn_k)
    directory = resolve_cache_dir(cache_dir)
    if directory is None:
        return _build(dataset, config, modalities, key=None)
    key = graph_cache_key(dataset, config, modalities)
    path = directory / f"{key}.bin"
    cached = load_graph(path)
    if cached is not None:
        graph, meta = cached
        setattr(graph, META_ATTR, meta | {"dataset": dataset.name, "cache_path": str(path)})
        return graph
    graph = _build(dataset, config, modalities, key=key)
    try:
        save_graph(path, graph, graph_meta(graph))
    except OSError as err:  # an unwritable cache must not stop a run
        warnings.warn(f"graph cache not written ({err})", stacklevel=2)
        return graph
    graph_meta(graph)["cache_path"] = str(path)
    return graph


def _resolve_modalities(dataset: Dataset, config: GraphConfig) -> list[str]:
    if config.modalities is None:
        return list(dataset.modalities)
    missing = [m for m in config.modalities if m not in dataset.modalities]
    if missing:
        raise DataError(dataset.source or dataset.name,
                        f"modalities {missing} requested but the dataset has {sorted(dataset.modalities)}")
    return list(config.modalities)


def _build(dataset: Dataset, config: GraphConfig, modalities: list[str], key: str | None) -> dgl.DGLGraph:
    edges: EdgeDict = {}
    edata: EdataDict = {}
    _add_interactions(edges, edata, dataset, config)
    for m in modalities:
        _add_similarity(edges, edata, dataset, m, config)
    if config.include_kg:
        _add_kg(edges, edata, dataset, config)
    n_nodes = {USER: dataset.n_users, ITEM: dataset.n_items, ENTITY: dataset.n_entities}
    graph = dgl.heterograph(edges, n_nodes, idtype=torch.int64)
    for etype, data in edata.items():
        graph.edges[etype].data.update(data)
    if config.store_features:
        for m in modalities:
            graph.nodes[ITEM].data[f"feat_{m}"] = _float_tensor(dataset.modalities[m])
    meta = {"format": FORMAT_VERSION, "dataset": dataset.name, "config": dataclasses.asdict(config),
            "modalities": modalities, "cache_key": key}
    setattr(graph, META_ATTR, meta)
    return graph


def _put(edges: EdgeDict, edata: EdataDict, etype: CanonicalEtype, src: Tensor, dst: Tensor,
         data: dict[str, Tensor]) -> None:
    if etype in edges:
        raise DataError(None, f"edge type {etype} defined twice (clashing relation or modality names)")
    edges[etype] = (src, dst)
    edata[etype] = data


def _float_tensor(a: np.ndarray) -> Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _interaction_weights(users: np.ndarray, items: np.ndarray, dataset: Dataset, norm: str) -> Tensor:
    """LightGCN's ``1 / sqrt(deg_u deg_i)`` per training pair (or 1 for ``norm='none'``)."""
    if norm == "none":
        return torch.ones(len(users), dtype=torch.float32)
    return degree_weights(torch.from_numpy(users), torch.from_numpy(items), dataset.n_users, dataset.n_items)


def _add_interactions(edges: EdgeDict, edata: EdataDict, dataset: Dataset, config: GraphConfig) -> None:
    users = np.ascontiguousarray(dataset.train[:, 0], dtype=np.int64)
    items = np.ascontiguousarray(dataset.train[:, 1], dtype=np.int64)
    w = _interaction_weights(users, items, dataset, config.interaction_norm)
    u, i = torch.from_numpy(users), torch.from_numpy(items)
    _put(edges, edata, INTERACT_ETYPE, u, i, {"w": w})
    _put(edges, edata, INTERACTED_BY_ETYPE, i, u, {"w": w.clone()})


def _add_similarity(edges: EdgeDict, edata: EdataDict, dataset: Dataset, modality: str,
                    config: GraphConfig) -> None:
    mask = torch.from_numpy(dataset.feature_mask(modality))
    knn = knn_graph_edges(_float_tensor(dataset.modalities[modality]), config.knn_k,
                          keep_self=config.knn_keep_self, symmetric=config.knn_symmetric,
                          norm=config.knn_norm, chunk_size=config.chunk_size,
                          mask=None if bool(mask.all()) else mask)
    _put(edges, edata, similar_etype(modality), knn.src, knn.dst, {"sim": knn.sim, "w": knn.w})


def _add_kg(edges: EdgeDict, edata: EdataDict, dataset: Dataset, config: GraphConfig) -> None:
    """One edge type per (relation, head type, tail type) group of triples, plus its reverse."""
    kg = dataset.kg
    if len(kg) == 0:
        return
    n_items = dataset.n_items
    head_is_entity, tail_is_entity = kg[:, 0] >= n_items, kg[:, 2] >= n_items
    group = kg[:, 1] * 4 + head_is_entity * 2 + tail_is_entity
    order = np.argsort(group, kind="stable")
    keys, starts = np.unique(group[order], return_index=True)
    for key, rows in zip(keys, np.split(order, starts[1:]), strict=True):
        rel, stype, dtype = int(key) // 4, (ENTITY if key & 2 else ITEM), (ENTITY if key & 1 else ITEM)
        src = torch.from_numpy(kg[rows, 0] - (n_items if stype == ENTITY else 0))
        dst = torch.from_numpy(kg[rows, 2] - (n_items if dtype == ENTITY else 0))
        name = dataset.relation_names[rel]
        _put(edges, edata, (stype, name, dtype), src, dst, _kg_data(rel, len(rows), False))
        if config.kg_reverse:
            _put(edges, edata, (dtype, REVERSE_PREFIX + name, stype), dst, src, _kg_data(rel, len(rows), True))


def _kg_data(rel: int, n: int, reverse: bool) -> dict[str, Tensor]:
    return {"rel": torch.full((n,), rel, dtype=torch.int64), "reversed": torch.full((n,), reverse)}


def kg_relation_etypes(graph: dgl.DGLGraph, include_reverse: bool = True) -> dict[int, list[CanonicalEtype]]:
    """KG relation id -> the canonical edge types that carry it (forward and, optionally, reversed)."""
    out: dict[int, list[CanonicalEtype]] = {}
    for etype in graph.canonical_etypes:
        data = graph.edges[etype].data
        if "rel" not in data or graph.num_edges(etype) == 0:
            continue
        if not include_reverse and "reversed" in data and bool(data["reversed"][0]):
            continue
        out.setdefault(int(data["rel"][0]), []).append(etype)
    return out


def graph_meta(graph: dgl.DGLGraph) -> dict:
    """The build metadata (config, modalities, cache key) attached by :func:`build_graph`, or ``{}``."""
    return getattr(graph, META_ATTR, {})


def graph_summary(graph: dgl.DGLGraph) -> str:
    """Readable schema: node counts, edge counts and data keys per canonical edge type, build config."""
    lines = ["nodes"] + [f"  {nt:<10} {graph.num_nodes(nt):>12,}" for nt in graph.ntypes]
    lines.append("edges")
    for etype in graph.canonical_etypes:
        keys = ", ".join(sorted(graph.edges[etype].data.keys()))
        lines.append(f"  {'(' + ', '.join(etype) + ')':<48} {graph.num_edges(etype):>12,}  [{keys}]")
    ndata = {nt: sorted(graph.nodes[nt].data.keys()) for nt in graph.ntypes if graph.nodes[nt].data.keys()}
    if ndata:
        lines.append("node data  " + "; ".join(f"{nt}: {', '.join(k)}" for nt, k in ndata.items()))
    meta = graph_meta(graph)
    if meta.get("config"):
        lines.append("config     " + ", ".join(f"{k}={v}" for k, v in meta["config"].items()))
        lines.append(f"modalities {', '.join(meta.get('modalities', [])) or 'none'}")
    if meta.get("cache_path"):
        lines.append(f"cache      {meta['cache_path']}")
    return "\n".join(lines)


def add_edge_type(graph: dgl.DGLGraph, canonical_etype: CanonicalEtype, src: Tensor, dst: Tensor,
                  edata: dict[str, Tensor] | None = None) -> dgl.DGLGraph:
    """A new graph with ``canonical_etype`` added (or its edges replaced), all other data kept.

    DGL cannot add a new edge type in place, so the graph is rebuilt from its edge lists (edge ids and
    every node/edge feature preserved) on the same device; ``edata`` goes on the new edges.
    """
    device = graph.device
    edges: EdgeDict = {c: graph.edges(etype=c, order="eid") for c in graph.canonical_etypes
                       if c != canonical_etype}
    edges[canonical_etype] = (torch.as_tensor(src, device=device, dtype=graph.idtype),
                              torch.as_tensor(dst, device=device, dtype=graph.idtype))
    n_nodes = {nt: graph.num_nodes(nt) for nt in graph.ntypes}
    out = dgl.heterograph(edges, n_nodes, idtype=graph.idtype, device=device)
    for nt in graph.ntypes:
        out.nodes[nt].data.update(dict(graph.nodes[nt].data))
    for c in graph.canonical_etypes:
        if c != canonical_etype:
            out.edges[c].data.update(dict(graph.edges[c].data))
    if edata:
        out.edges[canonical_etype].data.update(edata)
    setattr(out, META_ATTR, dict(graph_meta(graph)))
    return out
