"""Shared layers of dglmm/nn against dense or looped references written from their equations."""

import dgl
import pytest
import torch
import torch.nn.functional as F

from dglmm.graph.build import INTERACT_ETYPE, INTERACTED_BY_ETYPE
from dglmm.nn.attention import GATLayer, ModalityAttention, RelationAttention, edge_attention, weighted_sum
from dglmm.nn.init import init_linear, xavier_embedding
from dglmm.nn.item_graph import LearnedItemGraph
from dglmm.nn.losses import contrastive_items, info_nce, info_nce_chunked, multiview_info_nce
from dglmm.nn.propagation import (
    UserItemPropagation,
    item_mean,
    mixed_relation_propagate,
    relation_mean,
    relation_propagate,
    user_mean,
)
from tests.helpers import dense_interaction, dense_knn, manual_graph, tiny_dataset


def item_graph(n=9, m=25, seed=0, relations=("a", "b")):
    """Items with two random weighted item-item relations (possibly nodes without in-edges)."""
    gen = torch.Generator().manual_seed(seed)
    data = {("item", r, "item"): (torch.randint(0, n, (m,), generator=gen), torch.randint(0, n - 2, (m,), generator=gen))
            for r in relations}
    g = dgl.heterograph(data, num_nodes_dict={"item": n})
    for r in relations:
        g.edges[r].data["w"] = torch.rand(m, generator=gen)
    return g


def dense(g, etype, weight="w"):
    src, dst = g.edges(etype=etype)
    a = torch.zeros(g.num_nodes(etype[2]), g.num_nodes(etype[0]))
    w = g.edges[etype].data[weight] if isinstance(weight, str) else weight
    return a.index_put((dst, src), w, accumulate=True)


def test_relation_propagate_and_mix_equal_dense():
    g = item_graph()
    h = torch.randn(9, 4)
    a, b = ("item", "a", "item"), ("item", "b", "item")
    torch.testing.assert_close(relation_propagate(g, a, h), dense(g, a) @ h)
    w = torch.rand(25)
    torch.testing.assert_close(relation_propagate(g, a, h, w), dense(g, a, w) @ h)
    mix = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(mixed_relation_propagate(g, [a, b], mix, h), (0.3 * dense(g, a) + 0.7 * dense(g, b)) @ h)


def test_relation_mean_equals_dense_mean_with_empty_rows():
    g = item_graph()
    etype = ("item", "a", "item")
    h = torch.randn(9, 3)
    counts = dense(g, etype, torch.ones(25))
    deg = counts.sum(1, keepdim=True)
    expected = torch.where(deg > 0, counts @ h / deg.clamp_min(1), torch.zeros(9, 3))
    torch.testing.assert_close(relation_mean(g, etype, h), expected)
    assert (deg[-2:] == 0).all()  # the last two items receive no edge: their mean is 0


def test_user_and_item_means_over_training_interactions():
    data = tiny_dataset(n_users=10, n_items=7, n=30, seed=2)
    g = manual_graph(data)
    r = dense_interaction(data)
    item_h, user_h = torch.randn(7, 5), torch.randn(10, 5)
    du, di = r.sum(1, keepdim=True), r.sum(0, keepdim=True).T
    torch.testing.assert_close(user_mean(g, item_h), torch.where(du > 0, r @ item_h / du.clamp_min(1), 0.0))
    torch.testing.assert_close(item_mean(g, user_h), torch.where(di > 0, r.T @ user_h / di.clamp_min(1), 0.0))


def test_csr_cache_follows_graph_content_not_object():
    data = tiny_dataset(n_users=10, n_items=7, n=30, seed=4)
    g1, g2 = manual_graph(data), manual_graph(data)
    prop = UserItemPropagation("csr")
    u, i = torch.randn(10, 3), torch.randn(7, 3)
    prop(g1, u, i)
    cached = prop._csr
    prop(g2, u, i)                     # same content, another object: the matrices are reused
    assert prop._csr is cached
    for etype in (INTERACT_ETYPE, INTERACTED_BY_ETYPE):
        g2.edges[etype].data["w"] = g2.edges[etype].data["w"] * 2
    new_u, new_i = prop(g2, u, i)      # changed weights: rebuilt, and the result follows the new weights
    assert prop._csr is not cached
    ref_u, ref_i = UserItemPropagation("dgl")(g2, u, i)
    torch.testing.assert_close(new_u, ref_u)
    torch.testing.assert_close(new_i, ref_i)


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
    g = item_graph(n=8, m=30, seed=1)
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


def test_learned_item_graph_is_dense_knn_and_saved_in_state():
    torch.manual_seed(0)
    x, h = torch.randn(12, 5), torch.randn(12, 3)
    graph = LearnedItemGraph(12, 4)
    graph.rebuild([x])
    torch.testing.assert_close(graph.propagate(h), dense_knn(x, 4) @ h)
    restored = LearnedItemGraph(12, 4)
    restored.load_state_dict(graph.state_dict())          # the edges travel with the state dict
    torch.testing.assert_close(restored.propagate(h), graph.propagate(h))
    mix = torch.tensor([0.25, 0.75])
    y = torch.randn(12, 5)
    graph.rebuild([x, y], mix)                             # LATTICE: per-modality top-k mixed, then normalised
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    raw = sum(w * torch.zeros(12, 12).scatter(1, s.topk(4, 1).indices, s.topk(4, 1).values.clamp_min(0))
              for w, s in zip(mix, (xn @ xn.T, yn @ yn.T), strict=True))
    d = raw.sum(1)
    torch.testing.assert_close(graph.propagate(h), (d.pow(-0.5)[:, None] * raw * d.pow(-0.5)[None, :]) @ h)


def test_learned_item_graph_schedule():
    graph = LearnedItemGraph(6, 2, schedule="every_n", every=2)
    x = torch.randn(6, 3)
    rebuilt = []
    for epoch in range(4):
        graph.on_epoch_start(epoch)
        for batch in range(2):
            graph.on_batch_start(batch)
            before = graph.weight
            graph.refresh(lambda: ([x.requires_grad_()],))
            rebuilt.append(graph.weight is not before and graph.weight.requires_grad)
    assert rebuilt == [True, False, False, False, True, False, False, False]
    graph.eval()
    before = graph.weight
    graph.refresh(lambda: ([x],))
    assert graph.weight is not before                      # evaluation always rebuilds from the parameters
    with pytest.raises(ValueError, match="schedule"):
        LearnedItemGraph(6, 2, schedule="sometimes")


def test_added_relation_is_state_and_attaches_to_the_graph():
    from dglmm.nn.added_relation import AddedRelation

    data = tiny_dataset(n_users=8, n_items=6, n=20, seed=1)
    base = manual_graph(data)
    etype = ("item", "correlate", "item")
    added = AddedRelation(etype)
    assert added.attach(base) is base                        # nothing added yet
    added.set(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), torch.tensor([0.5, 0.25, 1.0]))
    g = added.attach(base)
    assert etype in g.canonical_etypes and g.num_edges(etype) == 3
    assert added.attach(manual_graph(data)) is g              # same content, another object: cached
    restored = AddedRelation(etype)
    restored.load_state_dict(added.state_dict())
    h = torch.randn(6, 2)
    torch.testing.assert_close(relation_propagate(restored.attach(base), etype, h), relation_propagate(g, etype, h))
    added.set(torch.tensor([3]), torch.tensor([4]), torch.tensor([2.0]))
    assert added.attach(base).num_edges(etype) == 1          # new edges: a new augmented graph


def test_fixed_sparse_equals_message_passing_with_gradients():
    from dglmm.nn.propagation import FixedSparse

    g = item_graph(n=9, m=30, seed=5, relations=("a",))
    etype = ("item", "a", "item")
    src, dst = g.edges(etype=etype)
    w = g.edges[etype].data["w"]
    x = torch.randn(9, 4, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    out = FixedSparse(src, dst, w, 9, 9)(x)
    ref = relation_propagate(g, etype, y)
    torch.testing.assert_close(out, ref)
    weights = torch.randn(9, 4)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


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


# --- dglmm/nn/init.py -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", ["zero", "xavier"])
def test_init_linear_bounds(bias):
    """Weight within Xavier's bound sqrt(6 / (fan_in + fan_out)); bias zero, or within sqrt(6 / (1 + d_out))."""
    torch.manual_seed(0)
    lin = init_linear(torch.nn.Linear(40, 24), bias=bias)
    assert lin.weight.abs().max() <= (6 / (40 + 24)) ** 0.5
    # Xavier's std sqrt(2 / (fan_in + fan_out)) = 0.177; PyTorch's default init would give 0.091
    assert abs(lin.weight.std().item() / (2 / (40 + 24)) ** 0.5 - 1) < 0.1
    if bias == "zero":
        assert torch.count_nonzero(lin.bias) == 0
    else:
        bound = (6 / (1 + 24)) ** 0.5
        assert lin.bias.abs().max() <= bound
        assert lin.bias.abs().max() > 0.5 * bound  # the [1, d_out] bound, not the weight's smaller one


def test_init_linear_without_bias_and_bad_option():
    lin = init_linear(torch.nn.Linear(5, 3, bias=False), bias="xavier")
    assert lin.bias is None
    with pytest.raises(ValueError, match="bias must be one of"):
        init_linear(torch.nn.Linear(5, 3), bias="normal")


def test_xavier_embedding_bound():
    torch.manual_seed(0)
    emb = xavier_embedding(300, 16)
    assert emb.weight.shape == (300, 16)
    bound = (6 / (300 + 16)) ** 0.5
    assert emb.weight.abs().max() <= bound and emb.weight.abs().max() > 0.9 * bound
