"""dglmm/nn/relation_matmul.py: the relation-block attention equals dgl's gather_mm RelationAttention, values and
gradients."""

import torch

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.graph.kg import knowledge_graph
from dglmm.nn.attention import RelationAttention
from dglmm.nn.relation_matmul import FastRelationAttention


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
