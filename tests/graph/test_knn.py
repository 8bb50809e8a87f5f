"""kNN graph construction and normalisation against dense reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dglmm.graph.knn import cosine_knn, knn_graph_edges, normalize_edge_weights, symmetrize
from tests.helpers import dense_normalise


def dense_cosine(x: np.ndarray) -> np.ndarray:
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return xn @ xn.T


def dense_topk(x: np.ndarray, k: int, keep_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: full cosine matrix, argsort per row, clamp negatives; returns (indices, values)."""
    sim = dense_cosine(x.astype(np.float64))
    if not keep_self:
        np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx, np.maximum(np.take_along_axis(sim, idx, axis=1), 0)


def to_dense(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
    """Scatter edges into ``M[dst, src] = w`` (duplicates would add up)."""
    m = torch.zeros(n, n, dtype=w.dtype)
    m.index_put_((dst, src), w, accumulate=True)
    return m


@pytest.mark.parametrize("keep_self", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
@pytest.mark.parametrize("k", [1, 5])
def test_cosine_knn_matches_brute_force(keep_self: bool, chunk_size: int, k: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12)).astype(np.float32)
    src, dst, sim = cosine_knn(torch.from_numpy(x), k, keep_self=keep_self, chunk_size=chunk_size)
    ref_idx, ref_val = dense_topk(x, k, keep_self)
    assert src.shape == dst.shape == sim.shape == (40 * k,)
    assert torch.equal(dst, torch.arange(40).repeat_interleave(k))
    np.testing.assert_array_equal(src.reshape(40, k).numpy(), ref_idx)
    np.testing.assert_allclose(sim.reshape(40, k).numpy(), ref_val, atol=1e-5)
    assert bool((src != dst).all()) or keep_self
    if keep_self:
        assert torch.equal(src.reshape(40, k)[:, 0], torch.arange(40))  # the item is its own best match


def test_negative_similarities_are_clamped() -> None:
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    _, _, sim = cosine_knn(x, k=4)
    assert bool((sim >= 0).all())
    _, _, raw = cosine_knn(x, k=4, clamp_negative=False)
    assert bool((raw < 0).any())
    torch.testing.assert_close(sim, raw.clamp_min(0))


def test_zero_rows_and_large_k() -> None:
    x = torch.zeros(5, 3)
    x[0, 0] = 1.0
    src, dst, sim = cosine_knn(x, k=50, keep_self=False)
    assert src.numel() == 5 * 4  # k capped at n - 1
    assert torch.isfinite(sim).all()
    ke = knn_graph_edges(x, 3)
    assert torch.isfinite(ke.w).all()


@pytest.mark.parametrize("mode", ["sym", "rw"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_normalisation_matches_dense_formula(mode: str, symmetric: bool) -> None:
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    src, dst, sim = cosine_knn(x, 4, chunk_size=8)
    if symmetric:
        src, dst, sim = symmetrize(src, dst, sim, 30)
    n_nodes = 32  # two isolated nodes: zero degree must give 0, not NaN
    w = normalize_edge_weights(src, dst, sim, n_nodes, mode)
    expected = dense_normalise(to_dense(src, dst, sim, n_nodes), mode)
    torch.testing.assert_close(to_dense(src, dst, w, n_nodes), expected)
    assert torch.isfinite(w).all()
    if mode == "rw":
        torch.testing.assert_close(to_dense(src, dst, w, n_nodes).sum(1)[:30], torch.ones(30, dtype=w.dtype))


def test_normalisation_none_and_unknown() -> None:
    w = torch.rand(3)
    idx = torch.tensor([0, 1, 2])
    assert normalize_edge_weights(idx, idx, w, 3, "none") is w
    with pytest.raises(ValueError):
        normalize_edge_weights(idx, idx, w, 3, "bogus")  # type: ignore[arg-type]


def test_symmetrize_is_symmetric_max_merge() -> None:
    x = torch.randn(25, 6, generator=torch.Generator().manual_seed(2))
    src, dst, sim = cosine_knn(x, 3, keep_self=False)
    s_src, s_dst, s_w = symmetrize(src, dst, sim, 25)
    pairs = s_dst * 25 + s_src
    assert pairs.unique().numel() == pairs.numel()  # no duplicate pairs
    assert bool((pairs[1:] > pairs[:-1]).all())  # sorted by (dst, src)
    dense = to_dense(s_src, s_dst, s_w, 25)
    torch.testing.assert_close(dense, dense.T)
    base = to_dense(src, dst, sim, 25)
    torch.testing.assert_close(dense, torch.maximum(base, base.T))


def test_sim_gradcheck() -> None:
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cosine_knn(t, 3, keep_self=False, chunk_size=3)[2], (x,))
    assert torch.autograd.gradcheck(lambda t: knn_graph_edges(t, 3, symmetric=True, chunk_size=2).w, (x,))


def test_sim_gradient_equals_dense_autograd() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(20, 5, generator=gen, requires_grad=True)
    h = torch.randn(20, 3, generator=gen)
    src, dst, sim = cosine_knn(x, 4, chunk_size=6)
    w = normalize_edge_weights(src, dst, sim, 20, "sym")
    (to_dense(src, dst, w, 20) @ h).square().sum().backward()
    sparse_grad = x.grad.clone()

    x.grad = None
    xn = x / x.norm(dim=1, keepdim=True)
    mask = to_dense(src, dst, torch.ones_like(sim), 20).bool()
    s = torch.where(mask, (xn @ xn.T).clamp_min(0), torch.zeros(()))
    (dense_normalise(s, "sym") @ h).square().sum().backward()
    torch.testing.assert_close(sparse_grad, x.grad)


def test_no_grad_when_input_is_constant() -> None:
    _, _, sim = cosine_knn(torch.randn(10, 4), 3)
    assert not sim.requires_grad


def test_grad_path_matches_no_grad_path() -> None:
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(5))
    plain = cosine_knn(x, 4, chunk_size=7)
    tracked = cosine_knn(x.clone().requires_grad_(), 4, chunk_size=7)
    assert tracked[2].requires_grad
    assert torch.equal(plain[0], tracked[0]) and torch.equal(plain[1], tracked[1])
    torch.testing.assert_close(plain[2], tracked[2].detach())
