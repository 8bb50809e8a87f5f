"""On-disk cache of built heterographs, keyed by a hash of everything that shapes the graph."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import dgl
import numpy as np
import torch

from dglmm.data.dataset import Dataset

#: Bump when the graph layout produced by :func:`dglmm.graph.build.build_graph` changes.
FORMAT_VERSION = 2  # 2: kNN graphs give items without a modality (all-zero rows) no edges
META_LABEL = "dglmm_meta_json"


def default_cache_dir() -> Path:
    """``$DGLMM_CACHE`` if set, else ``~/.cache/dglmm/graphs``."""
    env = os.environ.get("DGLMM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dglmm" / "graphs"


def resolve_cache_dir(cache_dir: str | Path | bool | None) -> Path | None:
    """``None`` -> default directory, ``False`` -> no cache, a path -> that path."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    return Path(cache_dir)


def _update_array(h: Any, name: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
    h.update(memoryview(a.reshape(-1).view(np.uint8)))  # no copy; works for empty arrays too


def graph_cache_key(dataset: Dataset, config: Any, modalities: list[str]) -> str:
    """sha256 over the graph-shaping arrays of ``dataset``, every ``config`` field and :data:`FORMAT_VERSION`."""
    h = hashlib.sha256()
    fields = dataclasses.asdict(config) | {"modalities": list(modalities)}
    header = {"format": FORMAT_VERSION, "n_users": dataset.n_users, "n_items": dataset.n_items,
              "n_entities": dataset.n_entities, "relation_names": list(dataset.relation_names),
              "config": fields}
    h.update(json.dumps(header, sort_keys=True).encode())
    _update_array(h, "train", dataset.train)
    _update_array(h, "kg", dataset.kg)
    for m in modalities:
        _update_array(h, f"modality/{m}", dataset.modalities[m])
    return h.hexdigest()


def save_graph(path: Path, graph: dgl.DGLGraph, meta: dict) -> None:
    """Write ``graph`` (and ``meta`` as JSON) atomically: a temporary file, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        dgl.save_graphs(str(tmp), [graph], {META_LABEL: blob})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_graph(path: Path) -> tuple[dgl.DGLGraph, dict] | None:
    """The cached graph and its metadata, or ``None`` when the file is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        graphs, labels = dgl.load_graphs(str(path))
        meta = json.loads(bytes(labels[META_LABEL].numpy()).decode())
    except Exception:  # a corrupt cache entry is rebuilt, never fatal
        return None
    return graphs[0], meta


def graph_key(graph: dgl.DGLGraph, etypes: list | None = None, data: tuple[str, ...] = ()) -> tuple:
    """The one in-memory content key of a graph's relations, under which models and layers cache what they
    derive from them (CSR matrices, attached relations, looped graphs): device, node and edge counts and
    position-weighted sums of the endpoints and of the edge fields ``data`` of each relation in ``etypes``
    (None: all).  O(E) reductions, never an object id: a rebuilt graph with the same content hits the cache,
    a graph changed in place misses it."""
    key: list = [graph.device.type]
    for etype in graph.canonical_etypes if etypes is None else etypes:
        src, dst = graph.edges(etype=etype, order="eid")
        position = torch.arange(1, len(src) + 1, device=src.device, dtype=torch.float64)
        key += [etype, graph.num_nodes(etype[0]), graph.num_nodes(etype[2]), len(src),
                float((src.double() * position).sum()), float((dst.double() * position).sum())]
        key += [float((graph.edges[etype].data[name].detach().double() * position).sum()) for name in data]
    return tuple(key)

