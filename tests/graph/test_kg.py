"""The homogeneous KG view holds exactly the dataset's triples, their inverses and the interactions."""

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.graph.kg import knowledge_graph


def test_knowledge_graph_edges_are_the_triples_both_ways_plus_interactions():
    data = make_synthetic(n_users=40, n_items=60, interactions_per_user=6, seed=1)
    graph = build_graph(data, GraphConfig(knn_k=3), cache_dir=False)
    kg = knowledge_graph(graph, data.n_relations, data.relation_names, users=True)
    src, dst = kg.graph.edges()
    rel = kg.graph.edata["rel"]
    got = set(zip(src.tolist(), rel.tolist(), dst.tolist(), strict=True))
    R = data.n_relations
    users = kg.offsets["user"]
    expected = {(h, r, t) for h, r, t in data.kg.tolist()}                     # head -> tail, relation r
    expected |= {(t, r + R, h) for h, r, t in data.kg.tolist()}                # the inverse relation r + R
    expected |= {(users + u, 2 * R, i) for u, i in data.train.tolist()}        # interact
    expected |= {(i, 2 * R + 1, users + u) for u, i in data.train.tolist()}    # interacted_by
    assert got == expected and len(src) == 2 * len(data.kg) + 2 * len(data.train)
    assert kg.n_relations == 2 * R + 2 and kg.relation_names[2 * R] == "interact"
    assert kg.graph.num_nodes() == data.n_items + data.n_entities + data.n_users


def test_extra_item_relation_gets_its_own_id():
    data = make_synthetic(n_users=30, n_items=40, interactions_per_user=5, seed=2)
    graph = build_graph(data, GraphConfig(knn_k=2), cache_dir=False)
    etype = ("item", "similar_image", "item")
    kg = knowledge_graph(graph, data.n_relations, extra=(etype,))
    rel = kg.graph.edata["rel"]
    assert kg.n_relations == 2 * data.n_relations + 1
    assert int((rel == 2 * data.n_relations).sum()) == graph.num_edges(etype)
