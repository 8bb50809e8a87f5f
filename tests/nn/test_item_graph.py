"""dglmm/nn/item_graph.py and frozen_item_graph.py: the learned and frozen kNN item graphs against dense
products."""

import pytest
import torch
import torch.nn.functional as F

from dglmm.nn.item_graph import LearnedItemGraph
from tests.helpers import dense_knn


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
