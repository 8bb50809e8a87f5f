"""The model contract and the registry.

Every model is a :class:`Recommender`: it consumes the dataset heterograph, returns user and item
representations, names its loss terms, scores users against all items and may rebuild graph structure in the
epoch hooks.  Adding a model is adding one file that decorates its class with :func:`register`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset


class Representations(NamedTuple):
    """Final user and item representations used for scoring (``extras`` carries model-specific tensors)."""

    user: torch.Tensor
    item: torch.Tensor
    extras: dict[str, torch.Tensor] | None = None


@dataclasses.dataclass
class ModelConfig:
    """Options shared by every model; subclasses add their own fields (each with a ``help`` metadata)."""

    embedding_dim: int = dataclasses.field(default=64, metadata={"help": "embedding size d"})
    reg_weight: float = dataclasses.field(
        default=1e-4, metadata={"help": "L2 weight on the batch's ego embeddings (BPR papers' definition)"})


class Recommender(nn.Module):
    """Base class: subclasses implement :meth:`forward` and usually :meth:`loss`.

    ``forward(graph)`` computes the representations of all users and items; :meth:`loss` turns a BPR batch
    into a dict of named terms (the trainer sums them and logs each); :meth:`score` ranks all items.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    needs_modalities: ClassVar[bool] = False
    needs_kg: ClassVar[bool] = False

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items

    # -- the contract --------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, graph: dgl.DGLGraph, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Default: BPR on the inner product of :meth:`forward` outputs plus L2 on ego embeddings."""
        from dglmm.nn.losses import bpr_loss, l2_penalty

        u, i, j = self.batch_representations(graph, users, pos, neg)
        terms = {"bpr": bpr_loss((u * i).sum(-1), (u * j).sum(-1))}
        ego = self.ego_embeddings(users, pos, neg)
        if ego and self.config.reg_weight > 0:
            terms["l2"] = self.config.reg_weight * l2_penalty(*ego)
        return terms

    def batch_representations(self, graph: dgl.DGLGraph, users: torch.Tensor, pos: torch.Tensor,
                              neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows of the batch; by default from the full :meth:`forward` (models without propagation can
        compute only these rows)."""
        reps = self(graph)
        return reps.user[users], reps.item[pos], reps.item[neg]

    def ego_embeddings(self, users: torch.Tensor, pos: torch.Tensor,
                       neg: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The layer-0 embeddings of a batch that the L2 term regularises (empty: no L2 term)."""
        return ()

    def score(self, reps: Representations, users: torch.Tensor) -> torch.Tensor:
        """Scores ``[len(users), n_items]`` from precomputed representations."""
        return reps.user[users] @ reps.item.T

    def on_epoch_start(self, epoch: int, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        """Hook for graph-rebuilding models; returns the graph to use this epoch."""
        return graph

    def on_epoch_end(self, epoch: int, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        return graph

    def on_batch_start(self, batch_index: int) -> None:
        """Called before every training batch (LATTICE rebuilds its learned graph on batch 0)."""


REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model reachable by ``cls.name`` (``dglmm train -m NAME``)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def config_fields(cls: type[Recommender]) -> list[tuple[str, Any, str]]:
    """(name, default, help) for every option of a model, for ``dglmm models``."""
    out = []
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def make_config(cls: type[Recommender], options: dict[str, Any]) -> ModelConfig:
    """Build a model config from a dict, rejecting unknown keys with a clear message."""
    known = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"model {cls.name!r} has no option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return cls.Config(**options)
