"""TEMPORARY: names of the shared API (runs/API.md) not yet on main; removed when "nn: shared layers" lands."""

from __future__ import annotations

import dataclasses
from typing import Any

import dgl
import dgl.function as fn
import torch

from dglmm.models.base import make_config
from dglmm.models.vbpr import item_modalities

BACKBONES = ("mf", "lightgcn", "ngcf")


@dataclasses.dataclass
class Batch:
    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def build_backbone(name, dataset, graph, embedding_dim, n_layers, reg_weight, **hints):
    from dglmm.models import REGISTRY

    cls = REGISTRY[name]
    options = {"embedding_dim": embedding_dim, "reg_weight": reg_weight}
    if name != "mf":
        options["n_layers"] = n_layers
    if name == "lightgcn" and "adjacency" in hints:
        options["adjacency"] = hints["adjacency"]
    if name == "ngcf":
        options["layer_combination"] = "mean"
    return cls(dataset, graph, make_config(cls, options))


def item_features(graph, names=None):
    return item_modalities(graph, names)


def relation_propagate(graph: dgl.DGLGraph, etype, h: torch.Tensor, weight: str = "w") -> torch.Tensor:
    with graph.local_scope():
        graph.nodes[etype[0]].data["h"] = h
        graph.update_all(fn.u_mul_e("h", weight, "m"), fn.sum("m", "h_out"), etype=etype)
        return graph.nodes[etype[2]].data["h_out"]


def mixed_relation_propagate(graph, etypes, weights, h):
    return sum(weights[r] * relation_propagate(graph, et, h) for r, et in enumerate(etypes))


def user_mean(graph, item_h):
    from dglmm.models.micro import user_mean as _user_mean

    return _user_mean(graph, item_h)
