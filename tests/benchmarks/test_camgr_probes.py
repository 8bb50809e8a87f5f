"""benchmarks/camgr_probes.py: each patch does what the appendix says, is undone afterwards, and trains."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import build_graph
from dglmm.models.base import make_config
from dglmm.models.camgr import CAmgr
from dglmm.nn.cross_attention import ResidualMLP

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "camgr_probes.py"
spec = importlib.util.spec_from_file_location("camgr_probes", SCRIPT)
probes = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = probes
spec.loader.exec_module(probes)


def small_camgr() -> tuple[CAmgr, object]:
    dataset = make_synthetic(n_users=40, n_items=30, seed=0)
    graph = build_graph(dataset, cache_dir=False)
    torch.manual_seed(0)
    return CAmgr(dataset, graph, make_config(CAmgr, {"embedding_dim": 8, "mlp_hidden": 8})), graph


def test_id_side_sets_h_m_to_zero_and_is_undone():
    model, graph = small_camgr()
    model.eval()
    with torch.no_grad():
        before = model.encode(graph)
        with probes.PROBES["id-side"]():
            patched = model.encode(graph)
            users, items = torch.tensor([0, 3]), torch.tensor([1, 2, 5])
            batch = model.encode(graph, users, items)
        after = model.encode(graph)
    assert patched["user_m"].abs().sum() == 0 and patched["item_m"].abs().sum() == 0
    assert batch["user_m"].shape == (2, 8) and batch["item_m"].abs().sum() == 0
    torch.testing.assert_close(patched["user_n"], before["user_n"])         # the ID side is untouched
    assert before["item_m"].abs().sum() > 0
    torch.testing.assert_close(after["item_m"], before["item_m"])


def test_node_layernorm_normalises_each_channel_over_the_nodes():
    torch.manual_seed(0)
    block = ResidualMLP(4, 8)
    block.mlp = torch.nn.Identity()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 2.0)
        block.norm.bias.uniform_(-1.0, 1.0)
    x, q = torch.randn(6, 4), torch.randn(6, 4)
    r = block.linear(x) + q
    mean, var = r.mean(0, keepdim=True), r.var(0, unbiased=False, keepdim=True)      # over the 6 nodes
    expected = (r - mean) / torch.sqrt(var + block.norm.eps) * block.norm.weight + block.norm.bias + r
    with probes.PROBES["node-layernorm"]():
        torch.testing.assert_close(block(x, q), expected)
    torch.testing.assert_close(block(x, q), F.layer_norm(r, (4,), block.norm.weight, block.norm.bias) + r)


def test_trains_as_dglmm_train_and_rejects_bad_arguments(tmp_path, capsys):
    code = probes.main(["id-side", "-d", "synthetic", "--set", "train.epochs=1", "--set", "train.progress=false",
                        "--set", "model.cl_weight=0", "--out", str(tmp_path)])
    assert code == 0 and list(tmp_path.glob("*/seed0/metrics.jsonl"))
    assert probes.main(["no-such-probe"]) == 2
    assert probes.main(["id-side", "-m", "mgcn"]) == 2
    assert "camgr_probes: error" in capsys.readouterr().err
