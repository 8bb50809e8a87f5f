"""Mean row norms of CAmgr's ID side ``h_n`` and modality side ``h_m`` (eq. 27), at initialisation and in a run.

Also the mean cosine between the ``h_m`` rows of random pairs of nodes: near 1 means ``h_m`` is one vector shared
by every user and item (it then scores items alike for every user).  And the rows entering and leaving the
LayerNorm of eq. 20 (``CR`` and ``LN(CR)``): their mean norm and the mean norm of their node-specific part (each row
minus the mean row), whose ratio is the gain the LayerNorm applies to what tells nodes apart; at initialisation
also with every linear layer's bias set to zero.

    python benchmarks/camgr_norms.py RUN_DIR/seed0      # a finished `dglmm train -m camgr` run folder
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from dglmm.data.readers import load_dataset
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.train.run import build_model


def report(label: str, model, graph) -> None:
    """Print the norms of eq. 27's parts and the LayerNorm rows of eq. 20, from one forward over all nodes."""
    seen = {}
    hook = model.common_branch.norm.register_forward_hook(lambda _, args, out: seen.update(x=args[0], y=out))
    model.eval()
    with torch.no_grad():
        parts = model.encode(graph)
    hook.remove()
    print(f"{label}:", norms(parts))
    print(f"{label}, eq. 20:", layernorm_gain(seen["x"], seen["y"]) if seen
          else "eq. 20 not computed (variant 'w/o CAFF')")


def norms(parts: dict[str, torch.Tensor]) -> str:
    h_m = torch.cat([parts["user_m"], parts["item_m"]])
    pairs = torch.randperm(len(h_m), generator=torch.Generator().manual_seed(0))
    half = len(pairs) // 2
    cosine = torch.nn.functional.cosine_similarity(h_m[pairs[:half]], h_m[pairs[half:2 * half]]).mean()
    return "  ".join(f"|{k}| {v.norm(dim=1).mean():.4f}" for k, v in parts.items()) + f"  cos(h_m) {cosine:.4f}"


def layernorm_gain(x: torch.Tensor, y: torch.Tensor) -> str:
    """``|CR|`` (``x``) and ``|LN(CR)|`` (``y``) of eq. 20, in full and node-specific (row minus the mean row)."""

    def specific(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean(0)).norm(dim=1).mean()

    return (f"|CR| {x.norm(dim=1).mean():.4f} (node-specific {specific(x):.4f})  |LN(CR)| {y.norm(dim=1).mean():.3f} "
            f"(node-specific {specific(y):.3f})  gain on the node-specific part {specific(y) / specific(x):.0f}x")


def zero_biases(model) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)


def main(run: str) -> None:
    config = yaml.safe_load((Path(run) / "config.yaml").read_text())
    dataset = load_dataset(config["dataset"])  # the path the run was trained on
    graph = build_graph(dataset, GraphConfig(**config.get("graph", {})))

    def initialised():
        torch.manual_seed(config["train"]["seed"])
        return build_model("camgr", dataset, graph, config["model"])

    model = initialised()
    report("initialisation", model, graph)
    state = torch.load(Path(run) / "best.pt", weights_only=True)
    model.load_state_dict(state["model"])
    report(f"best epoch {state['best']['epoch']}", model, graph)
    model = initialised()
    zero_biases(model)
    report("initialisation with zero biases", model, graph)


if __name__ == "__main__":
    main(sys.argv[1])
