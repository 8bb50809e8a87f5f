"""A kNN item graph learned from trainable projections (LATTICE/MICRO eqs. 1-4), as module state.

:class:`LearnedItemGraph` rebuilds ``A~ = norm(topk(cos(e~_i, e~_j)))`` from the features it is given (eqs.
1-3 on projections ``e~ = W e + b``, eq. 4), on a schedule: the first batch of every epoch (``epoch``, as the
official code), every batch (``batch``) or the first batch of every N-th epoch (``every_n``); in evaluation
mode it is rebuilt from the current parameters.  Only the forward pass that rebuilt it carries gradient to the
projections through the edge weights; later batches reuse it detached.  The edges and weights are the
module's ``extra_state``: they are saved in ``state_dict()`` (``checkpoint.pt``, ``best.pt``) and restored by
``load_state_dict``; :meth:`LearnedItemGraph.bind` keeps them on the model's device.  :func:`skip_connection` is eq. 5, the mix with a frozen graph.
"""

from __future__ import annotations

from collections.abc import Callable

import dgl
import dgl.function as fn
import torch
from torch import nn

from dglmm.graph.knn import cosine_knn, drop_masked, normalize_edge_weights
from dglmm.nn.graph_state import GraphState

SCHEDULES = ("epoch", "batch", "every_n")


class LearnedItemGraph(nn.Module, GraphState):
    """The learned graph ``A~`` over ``n_items`` with ``k`` neighbours per item; see the module docstring."""

    def __init__(self, n_items: int, k: int, schedule: str = "epoch", every: int = 1) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.n_items, self.k, self.schedule, self.every = n_items, k, schedule, every
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # tracks the module's device
        self.weight: torch.Tensor | None = None
        self._graph: dgl.DGLGraph | None = None
        self._epoch = 0
        self._due = True

    # -- schedule ---------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def on_batch_start(self, batch_index: int) -> None:
        if self.schedule == "batch":
            self._due = True
        elif batch_index == 0:
            every = self.every if self.schedule == "every_n" else 1
            self._due = self._due or self._epoch % every == 0
        else:
            self._due = False

    @property
    def built(self) -> bool:
        return self._graph is not None

    def refresh(self, features: Callable[[], tuple]) -> None:
        """Rebuild from ``features()`` when due (or in evaluation, or never built), else detach the weights."""
        if self._due or not self.training or not self.built:
            self.rebuild(*features())
            self._due = False
        else:
            self.weight = self.weight.detach()

    # -- construction (eqs. 1-3) ----------------------------------------------------------------------------
    def rebuild(self, projected: list[torch.Tensor], mix: torch.Tensor | None = None,
                masks: list[torch.Tensor | None] | None = None) -> None:
        """Eqs. 1-3 on ``projected``; several tensors are mixed by ``mix`` before normalisation (LATTICE).

        ``masks[m]`` (bool per item or None): items without that modality get no edge from it.
        """
        masks = masks or [None] * len(projected)
        edges = [drop_masked(*cosine_knn(p, self.k), mask) for p, mask in zip(projected, masks, strict=True)]
        src = torch.cat([e[0] for e in edges])
        dst = torch.cat([e[1] for e in edges])
        sim = torch.cat([e[2] if mix is None else mix[m] * e[2] for m, e in enumerate(edges)])
        self._set(src, dst, normalize_edge_weights(src, dst, sim, self.n_items))

    def _set(self, src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor) -> None:
        self._graph = dgl.graph((src, dst), num_nodes=self.n_items, device=weight.device)
        self.weight = weight

    def propagate(self, h: torch.Tensor) -> torch.Tensor:
        """``A~ h`` through DGL message passing (``fn.u_mul_e`` + ``fn.sum``)."""
        with self._graph.local_scope():
            self._graph.ndata["h"] = h
            self._graph.edata["w"] = self.weight
            self._graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
            return self._graph.ndata["h"]

    # -- state: the graph is saved and restored with the parameters ---------------------------------------------
    def get_extra_state(self) -> dict:
        state = {"epoch": self._epoch, "due": self._due}
        if self.built:
            src, dst = self._graph.edges()
            state.update(src=src.cpu(), dst=dst.cpu(), weight=self.weight.detach().cpu())
        return state

    def set_extra_state(self, state: dict) -> None:
        self._epoch, self._due = int(state["epoch"]), bool(state["due"])
        if "src" in state:
            device = self._anchor.device
            self._set(state["src"].to(device), state["dst"].to(device), state["weight"].to(device))
        else:
            self._graph, self.weight = None, None

    def bind(self, device: torch.device) -> None:
        """The graph and its weights on ``device`` (:class:`~dglmm.nn.graph_state.GraphState`)."""
        if self.built and self.weight.device != torch.device(device):
            src, dst = self._graph.edges()
            self._set(src.to(device), dst.to(device), self.weight.to(device))


def skip_connection(frozen: torch.Tensor, learned: torch.Tensor | float, lam: float) -> torch.Tensor:
    """``lambda * S~ h + (1 - lambda) * A~ h`` (eq. 5 applied to a signal)."""
    return lam * frozen + (1.0 - lam) * learned
