"""dglmm/nn/propagation.py: LightGCN propagation (both backends), relation propagation and means, fixed sparse
matrices, against dense references."""

import pytest
import torch

from dglmm.graph.build import INTERACT_ETYPE, INTERACTED_BY_ETYPE
from dglmm.nn.propagation import (
    UserItemPropagation,
    item_mean,
    mixed_relation_propagate,
    relation_mean,
    relation_propagate,
    user_mean,
)
from tests.helpers import (
    dense_interaction,
    dense_relation,
    manual_graph,
    random_item_graph,
    sym_norm_bipartite,
    tiny_dataset,
)


@pytest.mark.parametrize("backend", ["dgl", "csr"])
def test_one_hop_equals_dense(backend):
    data = tiny_dataset(n_users=15, n_items=11, n=50)
    g = manual_graph(data)
    a = sym_norm_bipartite(dense_interaction(data))
    user_h, item_h = torch.randn(15, 4), torch.randn(11, 4)
    new_user, new_item = UserItemPropagation(backend)(g, user_h, item_h)
    torch.testing.assert_close(new_user, a @ item_h)
    torch.testing.assert_close(new_item, a.T @ user_h)


@pytest.mark.parametrize("backend", ["dgl", "csr"])
def test_gradients_equal_dense(backend):
    data = tiny_dataset(n_users=10, n_items=8, n=30, seed=3)
    g = manual_graph(data)
    a = sym_norm_bipartite(dense_interaction(data))
    user_h = torch.randn(10, 3, requires_grad=True)
    item_h = torch.randn(8, 3, requires_grad=True)
    weights = torch.randn(10, 3), torch.randn(8, 3)
    new_user, new_item = UserItemPropagation(backend)(g, user_h, item_h)
    ((new_user * weights[0]).sum() + (new_item * weights[1]).sum()).backward()
    ref_u = user_h.detach().clone().requires_grad_()
    ref_i = item_h.detach().clone().requires_grad_()
    ((a @ ref_i * weights[0]).sum() + (a.T @ ref_u * weights[1]).sum()).backward()
    torch.testing.assert_close(user_h.grad, ref_u.grad)
    torch.testing.assert_close(item_h.grad, ref_i.grad)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        UserItemPropagation("dense")


def test_relation_propagate_and_mix_equal_dense():
    g = random_item_graph()
    h = torch.randn(9, 4)
    a, b = ("item", "a", "item"), ("item", "b", "item")
    torch.testing.assert_close(relation_propagate(g, a, h), dense_relation(g, a) @ h)
    w = torch.rand(25)
    torch.testing.assert_close(relation_propagate(g, a, h, w), dense_relation(g, a, w) @ h)
    mix = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(mixed_relation_propagate(g, [a, b], mix, h), (0.3 * dense_relation(g, a) + 0.7 * dense_relation(g, b)) @ h)


def test_relation_mean_equals_dense_mean_with_empty_rows():
    g = random_item_graph()
    etype = ("item", "a", "item")
    h = torch.randn(9, 3)
    counts = dense_relation(g, etype, torch.ones(25))
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


def test_fixed_sparse_equals_message_passing_with_gradients():
    from dglmm.nn.propagation import FixedSparse

    g = random_item_graph(n=9, m=30, seed=5, relations=("a",))
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
