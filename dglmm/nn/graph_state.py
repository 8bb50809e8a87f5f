"""Graph structure a model derives and keeps outside its parameters and buffers (a learned item graph, an edge
type added during training, semantic graphs), and the one way it follows the model's device.

Such a holder is a :class:`GraphState`: :meth:`GraphState.bind` moves what it holds to a device.  Nothing calls it
but :meth:`dglmm.models.Recommender.bind_graphs`, which the trainer calls once after moving the model and again
after every epoch hook (hooks may rebuild graphs); layers never move graphs lazily in their forward pass.
"""

from __future__ import annotations

import abc

import torch


class GraphState(abc.ABC):
    """A holder of derived graph structure; see the module docstring."""

    @abc.abstractmethod
    def bind(self, device: torch.device) -> None:
        """Move the held graphs and edge tensors to ``device`` (nothing when they are there already)."""
