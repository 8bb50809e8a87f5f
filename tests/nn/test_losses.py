"""dglmm/nn/losses.py (InfoNCE in its forms, item selection, uniformity) against full or looped references
written from their equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from dglmm.nn.losses import (
    contrastive_items,
    info_nce,
    info_nce_chunked,
    info_nce_to_target,
    mean_squared_distance,
    multiview_info_nce,
    uniformity,
)


@pytest.mark.parametrize("same_view", [True, False])
def test_chunked_info_nce_equals_full_value_and_gradient(same_view):
    torch.manual_seed(0)
    a, p = torch.randn(37, 6, requires_grad=True), torch.randn(37, 6)
    full = info_nce(a, p, 0.3, same_view)
    (g_full,) = torch.autograd.grad(full, a)
    chunked = info_nce_chunked(a, p, 0.3, same_view, chunk_size=5)
    (g_chunk,) = torch.autograd.grad(chunked, a)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(g_chunk, g_full)


def test_multiview_info_nce_reductions_and_item_subsets():
    torch.manual_seed(1)
    views, target = [torch.randn(20, 4), torch.randn(20, 4)], torch.randn(20, 4)
    items = torch.tensor([1, 5, 7, 11])
    terms = [info_nce(v[items], target[items], 0.5) for v in views]
    torch.testing.assert_close(multiview_info_nce(views, target, 0.5, items, "sum"), terms[0] + terms[1])
    torch.testing.assert_close(multiview_info_nce(views, target, 0.5, items, "mean"), (terms[0] + terms[1]) / 2)
    all_terms = [info_nce(v, target, 0.5) for v in views]
    torch.testing.assert_close(multiview_info_nce(views, target, 0.5, None, "mean", chunk_size=3),
                               (all_terms[0] + all_terms[1]) / 2)


def test_contrastive_item_selection():
    pos, neg = torch.tensor([3, 3, 8]), torch.tensor([1, 9, 8])
    assert contrastive_items(20, pos, neg, "all") is None
    assert contrastive_items(20, pos, neg, "batch").tolist() == [1, 3, 8, 9]
    torch.manual_seed(0)
    sub = contrastive_items(20, pos, neg, "all", max_items=6)
    assert len(sub) == 6 and len(sub.unique()) == 6 and sub.max() < 20
    with pytest.raises(ValueError, match="mode"):
        contrastive_items(20, pos, neg, "some")


def test_chunked_info_nce_saves_no_n_by_n_tensor_for_backward():
    """In training, only O(chunk x n) tensors are kept for the backward pass (chunks are recomputed)."""
    n, chunk = 300, 32
    a, p = torch.randn(n, 8, requires_grad=True), torch.randn(n, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        loss = info_nce_chunked(a, p, 0.5, chunk_size=chunk)
    loss.backward()
    assert max(saved) <= 2 * chunk * n        # one chunk's logits (cross- and same-view), never n x n
    assert sum(x >= n * n for x in saved) == 0


# -- SLIF-MR's L_inter and L_intra (eqs. 19-22) ----------------------------------------------------------------
def test_uniformity_and_literal_intra_losses_equal_loops():
    torch.manual_seed(0)
    x, t, n = torch.randn(7, 3), 2.0, 7
    f = [x[i] / x[i].norm() for i in range(n)]
    pairs = [(i, j) for i in range(n) for j in range(n)]
    literal = -sum(math.log(math.exp(-t * float((f[i] - f[j]).pow(2).sum()))) for i, j in pairs) / n ** 2
    torch.testing.assert_close(mean_squared_distance(x, t), torch.tensor(literal, dtype=torch.float32))
    off = [(i, j) for i, j in pairs if i != j]
    uni = math.log(sum(math.exp(-t * float((f[i] - f[j]).pow(2).sum())) for i, j in off) / len(off))
    torch.testing.assert_close(uniformity(x, t), torch.tensor(uni, dtype=torch.float32))


@pytest.mark.parametrize("exclude", [True, False])
def test_inter_loss_equals_eq_19_loop(exclude):
    torch.manual_seed(1)
    a, x, tau = torch.randn(6, 4), torch.randn(6, 4), 0.3
    cos = lambda u, v: F.cosine_similarity(u, v, dim=0)  # noqa: E731
    total = 0.0
    for i in range(6):
        num = torch.exp(cos(a[i], x[i]) / tau)
        den = sum(torch.exp(cos(a[i], x[j]) / tau) for j in range(6) if j != i or not exclude)
        total = total - torch.log(num / den)
    for chunk in (2, 1024):
        torch.testing.assert_close(info_nce_to_target(a, x, tau, exclude_positive=exclude, chunk_size=chunk),
                                   total / 6)
    negatives = torch.tensor([0, 3, 3])
    loop = 0.0
    for i in range(6):
        num = torch.exp(cos(a[i], x[i]) / tau)
        den = sum(torch.exp(cos(a[i], x[j]) / tau) for j in negatives.tolist() if j != i)
        den = den + (num if not exclude else 0)
        loop = loop - torch.log(num / den)
    torch.testing.assert_close(info_nce_to_target(a, x, tau, negatives, exclude_positive=exclude), loop / 6)


def test_chunked_inter_loss_recomputes_chunks_with_the_same_gradient():
    torch.manual_seed(2)
    a, x = torch.randn(9, 4, requires_grad=True), torch.randn(9, 4)
    grads = []
    for chunk in (2, 1024):  # 2: five checkpointed chunks; 1024: one plain chunk
        a.grad = None
        info_nce_to_target(a, x, 0.5, chunk_size=chunk).backward()
        grads.append(a.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def _inter_loss_and_grad(a, target, tau, negatives, exclude, chunk, precision="float32"):
    a.grad = None
    loss = info_nce_to_target(a * 2, target, tau, negatives, exclude_positive=exclude, chunk_size=chunk,
                              precision=precision)
    (loss * 1.7).backward()
    return loss.detach(), a.grad.clone()


@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("tau", [0.4, 0.01])  # 0.01: the row-maximum shift instead of the bound 1/tau
def test_fixed_target_inter_loss_has_autograds_value_and_gradient(exclude, sampled, tau):
    """The stop-gradient path (gradient formed in the forward pass) against autograd through the plain chunks."""
    torch.manual_seed(3)
    a, x = torch.randn(11, 5, requires_grad=True), torch.randn(11, 5)
    negatives = torch.tensor([0, 4, 4, 10, 7]) if sampled else None
    results = []
    for target in (x, x.clone().requires_grad_()):  # constant target: fixed-target path; else checkpointed
        for chunk in (3, 1024):
            results.append(_inter_loss_and_grad(a, target, tau, negatives, exclude, chunk))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0])
        torch.testing.assert_close(grad, results[0][1])


def test_bfloat16_inter_loss_is_close_to_float32():
    torch.manual_seed(4)
    a, x = torch.randn(300, 16, requires_grad=True), torch.randn(300, 16)
    exact = _inter_loss_and_grad(a, x, 0.2, None, True, 64)
    low = _inter_loss_and_grad(a, x, 0.2, None, True, 64, precision="bfloat16")
    torch.testing.assert_close(low[0], exact[0], rtol=3e-3, atol=0)
    assert F.cosine_similarity(low[1].flatten(), exact[1].flatten(), dim=0) > 0.999
    assert not torch.equal(low[0], exact[0])  # it did compute in bfloat16
