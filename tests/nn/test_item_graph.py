"""dglmm/nn/item_graph.py: the learned kNN item graph (LATTICE/MICRO), frozen kNN graphs from features (FREEDOM,
CAmgr's semantic graphs) and the heterograph's frozen relations (TMFUN), against dense products."""

import pytest
import torch
import torch.nn.functional as F

from dglmm.graph.build import GraphConfig, build_graph
from dglmm.graph.schema import similar_etype
from dglmm.nn.item_graph import ItemGraph
from tests.helpers import dense_knn, dense_normalise, dense_relation, tiny_dataset


def test_learned_item_graph_is_dense_knn_and_saved_in_state():
    torch.manual_seed(0)
    x, h = torch.randn(12, 5), torch.randn(12, 3)
    graph = ItemGraph(12, 4)
    graph.rebuild([x])
    torch.testing.assert_close(graph.propagate(h), dense_knn(x, 4) @ h)
    restored = ItemGraph(12, 4)
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
    graph = ItemGraph(6, 2, schedule="every_n", every=2)
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
        ItemGraph(6, 2, schedule="sometimes")


@pytest.mark.parametrize("norm", ["sym", "rw", "none"])
def test_frozen_graph_from_features_is_built_once_without_gradient_and_saved(norm):
    torch.manual_seed(1)
    x, h = torch.randn(10, 4, requires_grad=True), torch.randn(10, 3)
    graph = ItemGraph(10, 3, schedule="frozen", norm=norm)
    graph.refresh(lambda: ([x],))
    reference = dense_knn(x.detach(), 3, norm)
    torch.testing.assert_close(graph.propagate(h), reference @ h)
    assert not graph.weight.requires_grad
    before = graph.weight
    graph.on_batch_start(0)
    graph.refresh(lambda: ([torch.randn(10, 4)],))
    graph.eval()
    graph.refresh(lambda: ([torch.randn(10, 4)],))
    assert graph.weight is before                          # frozen: never rebuilt, in training or evaluation
    restored = ItemGraph(10, 3, schedule="frozen", norm=norm)
    restored.load_state_dict(graph.state_dict())
    torch.testing.assert_close(restored.propagate(h), reference @ h)


@pytest.mark.parametrize("backend", ["dgl", "csr"])
def test_freedom_style_frozen_graph_mixes_normalised_binary_knn_per_modality(backend):
    """FREEDOM's frozen item graph: binary top-k per modality, each D^-1/2 S D^-1/2, mixed by fixed weights."""
    torch.manual_seed(2)
    image, text, h = torch.randn(12, 6), torch.randn(12, 4), torch.randn(12, 5)
    mask = torch.ones(12, dtype=torch.bool)
    mask[[3, 7]] = False                                   # items 3 and 7 have no text
    weights = torch.tensor([0.1, 0.9])
    graph = ItemGraph(12, 4, schedule="frozen", norm="sym", fuse="after_norm", values="binary", weights=weights,
                      backend=backend)
    graph.rebuild([image, text], masks=[None, mask])
    s_image = dense_knn(image, 4, binary=True)
    s_text = dense_normalise(dense_knn(text, 4, "none", binary=True) * mask[:, None] * mask[None, :], "sym")
    torch.testing.assert_close(graph.propagate(h, 0), s_image @ h)
    torch.testing.assert_close(graph.propagate(h, 1), s_text @ h)
    torch.testing.assert_close(graph.propagate(h, None), (0.1 * s_image + 0.9 * s_text) @ h)


@pytest.mark.parametrize("relation", [0, 1, None])
def test_heterograph_relations_csr_and_dgl_equal_dense_with_gradients(relation):
    """TMFUN's S^m and G_M = sum_m lambda_m S^m (eq. 4): the relations the graph builder made, both backends."""
    data = tiny_dataset(n_users=20, n_items=15, n=110, seed=3, modalities={"image": 7, "text": 5})
    hetero = build_graph(data, GraphConfig(knn_k=4), cache_dir=False)
    etypes = [similar_etype("image"), similar_etype("text")]
    weights = torch.tensor([0.3, 0.7])
    dense = [dense_relation(hetero, et) for et in etypes]
    expected_matrix = weights[0] * dense[0] + weights[1] * dense[1] if relation is None else dense[relation]
    h = torch.randn(15, 8, requires_grad=True)
    results = []
    for backend in ("csr", "dgl"):
        graph = ItemGraph(15, schedule="frozen", weights=weights, backend=backend).follow(hetero, etypes)
        assert graph.follow(hetero, etypes) is graph and not graph.state_dict()["_extra_state"].get("relations")
        out = graph.propagate(h, relation)
        (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).reshape(out.shape)).sum(), h)
        results.append((out.detach(), grad))
    torch.testing.assert_close(results[0][0], expected_matrix @ h.detach())
    for got, want in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(got, want)
