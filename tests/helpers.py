"""Small hand-built inputs for unit tests (independent of the data readers and the graph builder)."""

from __future__ import annotations

import dgl
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dglmm.data.dataset import Dataset


def random_pairs(rng: np.random.Generator, n_users: int, n_items: int, n: int) -> np.ndarray:
    keys = rng.choice(n_users * n_items, size=n, replace=False)
    return np.stack([keys // n_items, keys % n_items], 1).astype(np.int64)


def tiny_dataset(n_users: int = 12, n_items: int = 9, n: int = 40, seed: int = 0,
                 modalities: dict[str, int] | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    pairs = random_pairs(rng, n_users, n_items, n)
    feats = {m: rng.normal(size=(n_items, d)).astype(np.float32) for m, d in (modalities or {}).items()}
    cut1, cut2 = int(0.7 * n), int(0.85 * n)
    return Dataset("tiny", n_users, n_items, pairs[:cut1], pairs[cut1:cut2], pairs[cut2:], feats,
                   source="tests")


def dense_interaction(dataset: Dataset) -> torch.Tensor:
    r = torch.zeros(dataset.n_users, dataset.n_items)
    r[dataset.train[:, 0], dataset.train[:, 1]] = 1.0
    return r


def sym_norm_bipartite(r: torch.Tensor) -> torch.Tensor:
    """Dense ``D_u^-1/2 R D_i^-1/2`` (zero degrees give zero rows)."""
    du, di = r.sum(1), r.sum(0)
    inv_u = torch.where(du > 0, du.pow(-0.5), torch.zeros_like(du))
    inv_i = torch.where(di > 0, di.pow(-0.5), torch.zeros_like(di))
    return inv_u[:, None] * r * inv_i[None, :]


def dense_adjacency(dataset: Dataset) -> torch.Tensor:
    """The symmetric-normalised ``[(U + I), (U + I)]`` user-item adjacency (users first)."""
    a = sym_norm_bipartite(dense_interaction(dataset))
    n_u = dataset.n_users
    adj = torch.zeros(n_u + dataset.n_items, n_u + dataset.n_items)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = a, a.T
    return adj


def manual_graph(dataset: Dataset) -> dgl.DGLGraph:
    """A user-item heterograph with symmetric-normalised ``w``, built with plain DGL calls."""
    u = torch.as_tensor(dataset.train[:, 0])
    i = torch.as_tensor(dataset.train[:, 1])
    g = dgl.heterograph({("user", "interact", "item"): (u, i), ("item", "interacted_by", "user"): (i, u)},
                        num_nodes_dict={"user": dataset.n_users, "item": dataset.n_items})
    norm = sym_norm_bipartite(dense_interaction(dataset))[u, i]
    g.edges["interact"].data["w"] = norm
    g.edges["interacted_by"].data["w"] = norm
    for m, feat in dataset.modalities.items():
        g.nodes["item"].data[f"feat_{m}"] = torch.as_tensor(feat)
    return g


def train_terms(model, graph, users, pos, neg) -> dict:
    """The loss terms of one training batch through the model contract (``training_forward`` + ``loss``)."""
    from dglmm.models import Batch

    batch = Batch(torch.as_tensor(users), torch.as_tensor(pos), torch.as_tensor(neg))
    return model.loss(model.training_forward(graph, batch), batch)


def dense_knn(x: torch.Tensor, k: int, norm: str = "sym", binary: bool = False) -> torch.Tensor:
    """The one dense kNN reference (MICRO eqs. 1-3, CAmgr eqs. 10-12): cosine, top-k per row (self included),
    clamp >= 0 (1 per kept entry when ``binary``, FREEDOM's code), then ``D^-1/2 S D^-1/2`` (``sym``),
    ``D^-1 S`` (``rw``) or nothing (``none``); zero degrees give zero rows."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    top = sim.topk(k, dim=1)
    s = torch.zeros_like(sim).scatter(1, top.indices, torch.ones_like(top.values) if binary else top.values.clamp_min(0))
    return dense_normalise(s, norm)


def dense_normalise(s: torch.Tensor, norm: str) -> torch.Tensor:
    """``D^-1/2 S D^-1/2`` (``sym``), ``D^-1 S`` (``rw``) or ``S`` (``none``) with ``D`` the row sums of the
    dense ``s``; zero degrees give zero rows."""
    if norm == "none":
        return s
    d = s.sum(1)
    if norm == "rw":
        return torch.where(d > 0, 1 / d, torch.zeros_like(d))[:, None] * s
    inv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return inv[:, None] * s * inv[None, :]


def cli_one_line_error(capsys, *args: str) -> str:
    """Run the CLI with ``args``; assert exit 2 with exactly one ``dglmm: error:`` line (warnings aside)."""
    from dglmm.cli import main

    code = main(list(args))
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.strip() and not line.startswith("warning:")]
    assert code == 2 and len(err) == 1 and err[0].startswith("dglmm: error:"), err
    return err[0]


def build_model(name: str, data: Dataset | None = None, graph_k: int = 3, **options):
    """The one dataset -> heterograph -> model builder of the model tests: ``(data, graph, model)`` for a
    registered model with ``options`` over a graph with ``graph_k`` kNN neighbours (default data: 25 users x 18 items with image and text features)."""
    from dglmm.graph.build import GraphConfig, build_graph
    from dglmm.models import REGISTRY, make_config

    if data is None:
        data = tiny_dataset(n_users=25, n_items=18, n=120, seed=5, modalities={"image": 7, "text": 5})
    graph = build_graph(data, GraphConfig(knn_k=graph_k), cache_dir=False)
    cls = REGISTRY[name]
    return data, graph, cls(data, graph, make_config(cls, options))


def random_item_graph(n=9, m=25, seed=0, relations=("a", "b")):
    """Items with two random weighted item-item relations (possibly nodes without in-edges)."""
    gen = torch.Generator().manual_seed(seed)
    data = {("item", r, "item"): (torch.randint(0, n, (m,), generator=gen), torch.randint(0, n - 2, (m,), generator=gen))
            for r in relations}
    g = dgl.heterograph(data, num_nodes_dict={"item": n})
    for r in relations:
        g.edges[r].data["w"] = torch.rand(m, generator=gen)
    return g


def dense_relation(g, etype, weight="w"):
    src, dst = g.edges(etype=etype)
    a = torch.zeros(g.num_nodes(etype[2]), g.num_nodes(etype[0]))
    w = g.edges[etype].data[weight] if isinstance(weight, str) else weight
    return a.index_put((dst, src), w, accumulate=True)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operator returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.shapes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
                if func is torch.ops.aten._softmax.default:
                    self.shapes.add(tuple(t.shape))
        return out


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``dglmm ARGS`` in process: (exit code, stdout, stderr); arguments may be paths or numbers."""
    from dglmm.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit 2 with exactly one ``dglmm: error:`` line (warnings aside), no traceback, naming every fragment."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dglmm: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
