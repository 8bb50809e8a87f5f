"""The modality block every multimodal model builds on: item features, missing-modality masks, a fixed or trainable
copy of the features, and the per-modality projection ``W_m x^m + b_m``.

The features live on the heterograph (``feat_<m>`` item data, :mod:`dglmm.graph.features`); an item without a
modality has an all-zero row there.  :class:`ModalityInputs` resolves the modalities a model uses, keeps the
masks of the items that have each one (buffers: they follow the model's device), optionally a trainable copy of
the features (the official LATTICE/MICRO code fine-tunes them, MGCN's too) and one linear map per modality into
the model's space.  A projected row of an item without that modality is zero (it carries no information from it).
"""

from __future__ import annotations

import dgl
import torch
from torch import nn

from dglmm.graph.features import apply_mask, feature_masks, item_features, modality_relations
from dglmm.nn.init import init_linear

#: initialisation of the projections: PyTorch's ``default``, ``xavier`` weights (bias as PyTorch's), or
#: ``xavier+zero_bias`` (:func:`dglmm.nn.init.init_linear`)
PROJECTION_INITS = ("default", "xavier", "xavier+zero_bias")

#: the names this block's parameters had on the model that mounts it before the block existed (checkpoints of
#: MICRO/LATTICE, TMFUN and SLIF-MR held ``projections.*`` and ``features.*``), by the block's attribute now;
#: :meth:`dglmm.models.base.Recommender.upgrade_state_dict` renames them when an older checkpoint is loaded
LEGACY_NAMES = {"projections": "projections", "features": "features"}


class ModalityInputs(nn.Module):
    """The modalities ``names`` of a graph (None: all it has) as model inputs; see the module docstring.

    Args:
        dim: output size of the projections (None: no projection, e.g. a model that only reads features).
        trainable: keep a trainable copy of the features instead of reading the graph's fixed ones.
        init: one of :data:`PROJECTION_INITS`, or ``None`` to leave it to :meth:`init_projections` (a model
            that must draw other parameters between creating and initialising the projections).
        relations: also require each modality's kNN relation ``similar_<m>`` (``self.etypes``).
        legacy_names: former attribute names on the mounting model -> this block's (see :data:`LEGACY_NAMES`).
    """

    def __init__(self, graph: dgl.DGLGraph, names: list[str] | None, dim: int | None = None,
                 trainable: bool = False, init: str | None = "default", relations: bool = False,
                 legacy_names: dict[str, str] = LEGACY_NAMES) -> None:
        super().__init__()
        self.legacy_names = dict(legacy_names)
        if relations:
            feats, self.etypes = modality_relations(graph, names)
        else:
            feats = item_features(graph, names)
            self.etypes = []
        self.names = list(feats)
        self.features = nn.ParameterDict(
            {m: nn.Parameter(f.detach().float().clone()) for m, f in feats.items()} if trainable else {})
        self.projections = nn.ModuleDict(
            {m: nn.Linear(f.shape[1], dim) for m, f in feats.items()} if dim is not None else {})
        if init is not None:
            self.init_projections(init)
        self._has_mask = {}
        for m, mask in feature_masks(graph, self.names).items():
            self._has_mask[m] = mask is not None
            if mask is not None:
                self.register_buffer(f"mask_{m}", mask, persistent=False)

    def init_projections(self, init: str) -> None:
        """Initialise every projection (see :data:`PROJECTION_INITS`)."""
        if init not in PROJECTION_INITS:
            raise ValueError(f"init must be one of {PROJECTION_INITS}, got {init!r}")
        for lin in self.projections.values():
            if init == "xavier":
                nn.init.xavier_uniform_(lin.weight)
            elif init == "xavier+zero_bias":
                init_linear(lin)

    def mask(self, modality: str) -> torch.Tensor | None:
        """Bool ``[n_items]``: the items that have ``modality`` (None when all have it)."""
        return getattr(self, f"mask_{modality}") if self._has_mask[modality] else None

    def raw(self, graph: dgl.DGLGraph) -> dict[str, torch.Tensor]:
        """The features ``x^m``: the trainable copies, or the graph's (fixed)."""
        if len(self.features):
            return dict(self.features)
        return item_features(graph, self.names)

    def project(self, graph: dgl.DGLGraph, modality: str, masked: bool = True,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """``W_m x^m + b_m`` of every item, or of the items ``rows`` only (zero rows for items without
        ``modality`` when ``masked``)."""
        lin = self.projections[modality]
        x = self.raw(graph)[modality]
        mask = self.mask(modality)
        if rows is not None:
            x, mask = x[rows], None if mask is None else mask[rows]
        out = lin(x.to(lin.weight.dtype))
        return apply_mask(out, mask) if masked else out

    def projected(self, graph: dgl.DGLGraph) -> list[torch.Tensor]:
        """:meth:`project` of every modality, in the order of ``self.names``."""
        return [self.project(graph, m) for m in self.names]

    def mean_projection(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """The mean over the modalities an item has of its projections (zero for an item with none)."""
        total = count = None
        for m in self.names:  # one term per modality (two or three), not per item
            h = self.project(graph, m)
            mask = self.mask(m)
            c = h.new_ones(len(h), 1) if mask is None else mask.to(h).unsqueeze(1)
            total = h if total is None else total + h
            count = c if count is None else count + c
        return total / count.clamp_min(1.0)
