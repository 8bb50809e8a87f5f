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


def test_pruned_interaction_graph_renormalises_lightgcn_weights_on_the_kept_edges():
    """FREEDOM / SLIF-MR eqs. 6-7: the kept interactions' weights are 1/sqrt(d_u d_i) of the pruned graph."""
    from dglmm.graph.build import GraphConfig, build_graph
    from dglmm.graph.ops import interaction_graph, pruned_interactions
    from dglmm.graph.schema import INTERACT_ETYPE, INTERACTED_BY_ETYPE
    from tests.helpers import sym_norm_bipartite, tiny_dataset

    data = tiny_dataset(n_users=15, n_items=11, n=60)
    graph = build_graph(data, GraphConfig(knn_k=2), cache_dir=False)
    users, items = pruned_interactions(graph, 0.0, None)
    assert torch.equal(users, graph.edges(etype=INTERACT_ETYPE, order="eid")[0])
    users, items = pruned_interactions(graph, 0.3, pruning_generator(1, 2))
    assert len(users) == round(0.7 * graph.num_edges(INTERACT_ETYPE))
    pruned = interaction_graph(users, items, graph)
    r = torch.zeros(15, 11).index_put((users, items), torch.tensor(1.0))
    expected = sym_norm_bipartite(r)
    for etype, (rows, cols) in ((INTERACT_ETYPE, (users, items)), (INTERACTED_BY_ETYPE, (users, items))):
        torch.testing.assert_close(pruned.edges[etype].data["w"], expected[rows, cols])
    assert pruned.num_nodes("user") == 15 and pruned.num_nodes("item") == 11
