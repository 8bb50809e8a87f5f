"""LightGCN propagation (both backends) against a dense normalised-adjacency reference."""

import pytest
import torch

from dglmm.nn.propagation import UserItemPropagation
from tests.helpers import dense_interaction, manual_graph, sym_norm_bipartite, tiny_dataset


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
