"""dglmm/nn/relation_matmul.py: the relation-block attention equals dgl's gather_mm RelationAttention, values and
gradients."""

import dgl
import torch

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.graph.kg import knowledge_graph
from dglmm.nn.attention import RelationAttention
from dglmm.nn.relation_matmul import FastRelationAttention, gather_project


def test_fast_relation_attention_matches_gather_mm_with_gradients():
    data = make_synthetic(n_users=60, n_items=50, interactions_per_user=6, n_clusters=3, n_kg_attributes=5,
                          modality_dims={}, seed=3)
    graph = build_graph(data, GraphConfig(knn_k=4), cache_dir=False)
    kg = knowledge_graph(graph, len(data.relation_names)).graph
    fast = FastRelationAttention(int(kg.edata["rel"].max()) + 1, 8, 5)
    slow = RelationAttention(int(kg.edata["rel"].max()) + 1, 8, 5)
    slow.load_state_dict(fast.state_dict())
    h = torch.randn(kg.num_nodes(), 8)
    h_fast, h_slow = h.clone().requires_grad_(), h.clone().requires_grad_()
    a, b = fast(kg, h_fast), slow(kg, h_slow)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    (a * torch.arange(len(a))).sum().backward()
    (b * torch.arange(len(b))).sum().backward()
    torch.testing.assert_close(fast.transform.grad, slow.transform.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.relation_emb.grad, slow.relation_emb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h_fast.grad, h_slow.grad, rtol=1e-4, atol=1e-5)


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
