"""dglmm/graph/ops.py: degree weights and degree-sensitive pruning (FREEDOM; SLIF-MR eq. 6)."""


import torch

from dglmm.graph.ops import degree_weights, prune_edges, pruning_generator


def test_pruning_keeps_the_share_and_drops_high_degree_edges_more_often():
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 300, 200
    users = torch.cat([torch.randint(0, 30, (3000,), generator=gen), torch.randint(30, n_users, (3000,), generator=gen)])
    items = torch.cat([torch.randint(0, 20, (3000,), generator=gen), torch.randint(20, n_items, (3000,), generator=gen)])
    p = degree_weights(users, items, n_users, n_items)
    deg_u, deg_i = torch.bincount(users), torch.bincount(items)
    torch.testing.assert_close(p, 1 / (deg_u[users].float() * deg_i[items].float()).sqrt())
    for ratio in (0.1, 0.3):
        kept = prune_edges(p, ratio, pruning_generator(7, 0))
        assert len(kept) == round((1 - ratio) * len(p)) and len(torch.unique(kept)) == len(kept)
        dropped = torch.ones(len(p), dtype=torch.bool)
        dropped[kept] = False
        popular = p <= p.quantile(0.25)         # edges between high-degree nodes
        rare = p >= p.quantile(0.75)
        assert dropped[popular].float().mean() > 2 * dropped[rare].float().mean()
    assert torch.equal(prune_edges(p, 0.2, pruning_generator(7, 3)), prune_edges(p, 0.2, pruning_generator(7, 3)))
    assert not torch.equal(prune_edges(p, 0.2, pruning_generator(7, 3)), prune_edges(p, 0.2, pruning_generator(7, 4)))
