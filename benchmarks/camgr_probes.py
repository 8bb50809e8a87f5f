"""CAmgr diagnostics that patch the model, then train exactly as ``dglmm train -m camgr`` does.

    OMP_NUM_THREADS=1 python benchmarks/camgr_probes.py PROBE -d DATA [any other `dglmm train` option ...]

PROBE is one of:

* ``id-side``: the modality side ``h_m`` is 0 (``CAmgr.fuse`` returns zeros), so the prediction of eq. 28 is the
  GAT of eqs. 7-9 alone; run it with ``--set model.cl_weight=0`` (with ``h_m = 0`` the InfoNCE of eq. 30 has no
  modality side to align).
* ``node-layernorm``: the LayerNorm of eqs. 20 and 23 normalises each channel over the nodes (the ``d x N``
  layout of the paper read literally) instead of each node over its channels; its affine weight and bias stay
  per channel.

Neither is an option of the model: they answer questions about it (docs/appendix/camgr.md).  Everything after
PROBE goes to ``dglmm train -m camgr`` (``-m`` is set here), so run folders, logs and results are the usual ones.
"""

from __future__ import annotations

import sys
from unittest.mock import patch

import torch
import torch.nn.functional as F

from dglmm.cli import main as dglmm_main
from dglmm.models.camgr import CAmgr
from dglmm.nn.cross_attention import ResidualMLP


def _no_modality_side(self: CAmgr, tokens: dict, h_n: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``h_m = 0``: zeros of ``h_n``'s shape (its rows are the queried nodes) in place of eqs. 15-26."""
    return torch.zeros_like(h_n)


def _node_layernorm_forward(self: ResidualMLP, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``H = MLP(LN_nodes(R)) + R`` with ``LN_nodes`` normalising each channel over the rows (nodes)."""
    r = self.linear(x) + q
    normed = F.layer_norm(r.T, (r.shape[0],), eps=self.norm.eps).T
    return self.mlp(normed * self.norm.weight + self.norm.bias) + r


#: probe -> a context manager that applies its patch (undone on exit)
PROBES = {"id-side": lambda: patch.object(CAmgr, "fuse", _no_modality_side),
          "node-layernorm": lambda: patch.object(ResidualMLP, "forward", _node_layernorm_forward)}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PROBES:
        print(__doc__)
        print(f"camgr_probes: error: the first argument is one of {', '.join(PROBES)}", file=sys.stderr)
        return 2
    if "-m" in argv or "--model" in argv:
        print("camgr_probes: error: -m is set here (camgr)", file=sys.stderr)
        return 2
    with PROBES[argv[0]]():
        return dglmm_main(["train", "-m", "camgr", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
