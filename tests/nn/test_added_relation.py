"""dglmm/nn/added_relation.py: a model-owned relation is module state and attaches to the graph."""

import torch

from dglmm.nn.propagation import (
    relation_propagate,
)
from tests.helpers import manual_graph, tiny_dataset


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
