"""dglmm/nn/attention.py (edge, GAT, relation and modality attention) against looped references written from
their equations."""

import dgl
import pytest
import torch
import torch.nn.functional as F

from dglmm.graph.build import INTERACT_ETYPE, INTERACTED_BY_ETYPE
from dglmm.nn.attention import GATLayer, ModalityAttention, RelationAttention, edge_attention, weighted_sum
from tests.helpers import dense_interaction, manual_graph, random_item_graph, tiny_dataset


def loop_edge_attention(g, etype, query, key, value, score, scale=None, slope=0.2):
    """Brute force: for every destination, softmax over its in-edges, weighted sum of source values."""
    src, dst = g.edges(etype=etype)
    out = torch.zeros(g.num_nodes(etype[2]), value.shape[1])
    for d in range(g.num_nodes(etype[2])):
        edges = (dst == d).nonzero().flatten().tolist()
        if not edges:
            continue
        if score == "dot":
            logits = torch.stack([key[src[e]] @ query[d] / (scale or key.shape[1] ** 0.5) for e in edges])
        else:
            logits = torch.stack([F.leaky_relu(key[src[e], 0] + query[d, 0], slope) for e in edges])
        alpha = torch.softmax(logits, 0)
        out[d] = sum(a * value[src[e]] for a, e in zip(alpha, edges, strict=True))
    return out


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_edge_attention_equals_loop(score):
    g = random_item_graph(n=8, m=30, seed=1)
    etype = ("item", "a", "item")
    dim = 4 if score == "dot" else 1
    q, k, v = torch.randn(8, dim), torch.randn(8, dim), torch.randn(8, 3)
    torch.testing.assert_close(edge_attention(g, etype, q, k, v, score=score),
                               loop_edge_attention(g, etype, q, k, v, score))


def test_gat_layer_equals_hand_written_eqs_7_8():
    data = tiny_dataset(n_users=6, n_items=5, n=16, seed=7)
    g = manual_graph(data)
    torch.manual_seed(0)
    layer = GATLayer(4, 3)
    hu, hi = torch.randn(6, 4), torch.randn(5, 4)
    out = layer(g, {"user": hu, "item": hi}, [INTERACT_ETYPE, INTERACTED_BY_ETYPE])
    w, a_src, a_dst = layer.linear.weight, layer.attn_src[:, 0], layer.attn_dst[:, 0]
    r = dense_interaction(data)
    for n_h, other_h, adj, key in ((hu, hi, r, "user"), (hi, hu, r.T, "item")):
        for n in range(len(n_h)):
            nbrs = adj[n].nonzero().flatten()
            if len(nbrs) == 0:
                continue
            e = torch.stack([F.leaky_relu(a_dst @ (w @ n_h[n]) + a_src @ (w @ other_h[j]), 0.2) for j in nbrs])
            alpha = torch.softmax(e, 0)                                               # eq. 8
            expected = F.relu(sum(alpha[t] * (w @ other_h[j]) for t, j in enumerate(nbrs)))  # eq. 7
            torch.testing.assert_close(out[key][n], expected)


def test_gat_layer_identity_transform_equals_learned_layer_with_w_identity():
    data = tiny_dataset(n_users=6, n_items=5, n=16, seed=7)
    g = manual_graph(data)
    torch.manual_seed(0)
    fixed, learned = GATLayer(4, 4, transform="identity"), GATLayer(4, 4)
    assert not list(fixed.linear.parameters())
    with torch.no_grad():
        learned.linear.weight.copy_(torch.eye(4))
        learned.attn_src.copy_(fixed.attn_src)
        learned.attn_dst.copy_(fixed.attn_dst)
    feats, etypes = {"user": torch.randn(6, 4), "item": torch.randn(5, 4)}, [INTERACT_ETYPE, INTERACTED_BY_ETYPE]
    for key, value in fixed(g, feats, etypes).items():
        torch.testing.assert_close(value, learned(g, feats, etypes)[key])


def test_relation_attention_equals_loop_over_triples():
    torch.manual_seed(3)
    n_nodes, n_rel, d, dr = 7, 3, 5, 4
    heads = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    tails = torch.tensor([1, 4, 5, 2, 6, 0, 4, 6])
    rels = torch.tensor([0, 1, 2, 0, 2, 1, 1, 0])
    g = dgl.graph((tails, heads), num_nodes=n_nodes)
    g.edata["rel"] = rels
    layer = RelationAttention(n_rel, d, dr)
    e = torch.randn(n_nodes, d)
    pi = layer(g, e)
    raw = torch.stack([(e[t] @ layer.transform[r]) @ torch.tanh(e[h] @ layer.transform[r] + layer.relation_emb[r])
                       for h, r, t in zip(heads, rels, tails, strict=True)])      # KGAT eq. 4
    expected = torch.empty_like(raw)
    for h in heads.unique():
        mask = heads == h
        expected[mask] = torch.softmax(raw[mask], 0)                               # eq. 5
    torch.testing.assert_close(pi, expected)
    agg = RelationAttention.aggregate(g, e, pi)
    ref = torch.zeros(n_nodes, d).index_add_(0, heads, expected[:, None] * e[tails])   # eq. 3
    torch.testing.assert_close(agg, ref)


def test_modality_attention_and_weighted_sum():
    torch.manual_seed(0)
    att = ModalityAttention(4)
    views = [torch.randn(6, 4), torch.randn(6, 4)]
    w = att(views)
    logits = torch.cat([att.query(torch.tanh(att.project(v))) for v in views], 1)
    torch.testing.assert_close(w, torch.softmax(logits, 1))
    torch.testing.assert_close(weighted_sum(w, views), w[:, :1] * views[0] + w[:, 1:] * views[1])
