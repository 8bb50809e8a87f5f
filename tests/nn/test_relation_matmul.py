"""gather_project: the values and gradients of dgl.ops.gather_mm, bit for bit, and of a per-row loop."""

import dgl
import torch

from dglmm.nn.relation_matmul import gather_project


def _inputs(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g, requires_grad=True)  # d > 8: dgl takes its per-relation path
    weights = torch.randn(5, 16, 3, generator=g, requires_grad=True)
    rel = torch.tensor([3, 0, 3, 1, 0, 3, 3, 1, 0, 0, 3][:n])  # relations 2 and 4 have no row
    return x, weights, rel


def _grads(fn, x, weights, rel, upstream):
    x.grad = weights.grad = None
    out = fn(x, weights, rel)
    (out * upstream).sum().backward()
    return out.detach(), x.grad.clone(), weights.grad.clone()


def test_gather_project_equals_gather_mm_exactly():
    x, weights, rel = _inputs(11)
    upstream = torch.randn(11, 3, generator=torch.Generator().manual_seed(1))
    ours = _grads(gather_project, x, weights, rel, upstream)
    dgls = _grads(lambda a, b, r: dgl.ops.gather_mm(a, b, idx_b=r), x, weights, rel, upstream)
    for a, b in zip(ours, dgls, strict=True):
        assert torch.equal(a, b)
    loop = torch.stack([x[i] @ weights[rel[i]] for i in range(len(rel))])  # the definition, row by row
    torch.testing.assert_close(ours[0], loop)
    assert torch.equal(ours[2][2], torch.zeros(16, 3)) and torch.equal(ours[2][4], torch.zeros(16, 3))


def test_gather_project_empty_batch():
    x, weights, _ = _inputs(0)
    assert gather_project(x, weights, torch.zeros(0, dtype=torch.long)).shape == (0, 3)
