"""Access to the item features stored on the heterograph (``feat_<modality>`` item node data)."""

from __future__ import annotations

import dgl
import torch

from dglmm.errors import InputError


def item_features(graph: dgl.DGLGraph, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The item feature tensors ``feat_<m>`` of ``names`` (None: every modality the graph has), sorted by name."""
    data = graph.nodes["item"].data
    available = sorted(k[len("feat_"):] for k in data.keys() if k.startswith("feat_"))
    chosen = available if names is None else list(names)
    missing = [m for m in chosen if m not in available]
    if missing or not chosen:
        raise InputError(f"modalities {missing or chosen} not in the graph (it has: {available or 'none'})")
    return {m: data[f"feat_{m}"] for m in chosen}


def item_modalities(graph: dgl.DGLGraph, names: list[str] | None = None) -> list[str]:
    """The modality names :func:`item_features` resolves (InputError for a modality the graph lacks)."""
    return list(item_features(graph, names))


def feature_masks(graph: dgl.DGLGraph, names: list[str] | None = None) -> dict[str, torch.Tensor | None]:
    """Per modality, a bool ``[n_items]`` mask of the items that have its features (row not all zeros), or
    None when every item has them (nothing to mask: models skip the masking)."""
    out: dict[str, torch.Tensor | None] = {}
    for m, feats in item_features(graph, names).items():
        mask = (feats != 0).any(1)
        out[m] = None if bool(mask.all()) else mask
    return out


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Rows of items without the modality set to zero (``x`` unchanged when ``mask`` is None)."""
    return x if mask is None else x * mask.to(x.dtype).unsqueeze(1)


def modality_relations(graph: dgl.DGLGraph, names: list[str] | None = None
                       ) -> tuple[dict[str, torch.Tensor], list[tuple[str, str, str]]]:
    """The features of ``names`` (as :func:`item_features`) and their kNN relations ``similar_<m>``.

    A modality without its kNN relation in the graph (e.g. ``graph.modalities`` left it out) is an input error.
    """
    from dglmm.graph.schema import similar_etype

    feats = item_features(graph, names)
    etypes = [similar_etype(m) for m in feats]
    missing = [et[1] for et in etypes if et not in graph.canonical_etypes]
    if missing:
        raise InputError(f"the graph has no {', '.join(missing)} relation (set graph.modalities to include "
                         f"{', '.join(m for m in feats if similar_etype(m)[1] in missing)})")
    return feats, etypes
