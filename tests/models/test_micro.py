"""MICRO / LATTICE against dense references written from the paper's equations."""

import pytest
import torch
import torch.nn.functional as F

from dglmm.models.micro import VARIANTS, orthogonality
from dglmm.nn.losses import info_nce
from tests.helpers import (
    build_model,
    dense_adjacency,
    dense_interaction,
    dense_knn,
    train_terms,
)

K = 4


def setup(name: str, **options):
    return build_model(name, graph_k=K, **{"knn_k": K, "embedding_dim": 8, **options})


def frozen_dense(data, modality):
    return dense_knn(torch.as_tensor(data.modalities[modality]), K)


@torch.no_grad()
def test_learned_graph_and_convolution_equal_dense():
    data, graph, model = setup("micro", lambda_coeff=0.7, item_layers=2)
    model.eval()
    views = model.item_views(graph)
    item_id = model.backbone.item_embedding_table()
    for m, view in zip(model.modalities, views.per_modality, strict=True):
        projected = model.inputs.projections[m](torch.as_tensor(data.modalities[m]))       # eq. 4
        a = 0.7 * frozen_dense(data, m) + 0.3 * dense_knn(projected, K)      # eq. 5
        torch.testing.assert_close(view, a @ (a @ item_id), rtol=1e-4, atol=1e-5)   # eq. 6, L = 2


def test_learned_graph_weights_carry_gradient_on_rebuild_only():
    data, graph, model = setup("micro")
    model.on_epoch_start(0, graph)
    model.on_batch_start(0)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
    sum(train_terms(model, graph, users, pos, neg).values()).backward()
    grad0 = model.inputs.projections["image"].weight.grad.abs().sum()
    model.zero_grad()
    model.on_batch_start(1)
    terms = train_terms(model, graph, users, pos, neg)
    sum(terms.values()).backward()
    assert grad0 > 0
    # Batch 1 reuses the graph detached: only the contrastive/BPR path through the graph weights is cut.
    assert model.inputs.projections["image"].weight.grad is None or model.inputs.projections["image"].weight.grad.abs().sum() == 0


def test_info_nce_equals_hand_written_formula():
    torch.manual_seed(0)
    a, p, tau = torch.randn(6, 4), torch.randn(6, 4), 0.5
    cos = lambda x, y: F.cosine_similarity(x, y, dim=0)  # noqa: E731
    total = 0.0
    for i in range(6):  # eq. 10: positive (a_i, p_i); negatives (a_i, p_j) and (a_i, a_j), j != i
        num = torch.exp(cos(a[i], p[i]) / tau)
        den = num + sum(torch.exp(cos(a[i], p[j]) / tau) + torch.exp(cos(a[i], a[j]) / tau)
                        for j in range(6) if j != i)
        total = total - torch.log(num / den)
    torch.testing.assert_close(info_nce(a, p, tau), total / 6)


def test_orthogonality_equals_hand_written_formula():
    torch.manual_seed(1)
    v, t, s = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    expected = sum((v[i] @ t[i]) ** 2 for i in range(5)) / 5                    # eq. 13
    torch.testing.assert_close(orthogonality([v, t]), expected)
    pairs = sum(((x[i] @ y[i]) ** 2 for i in range(5) for x, y in ((v, t), (v, s), (t, s))))
    torch.testing.assert_close(orthogonality([v, t, s]), pairs / 5)


@torch.no_grad()
def test_micro_scores_follow_eqs_7_to_17():
    data, graph, model = setup("micro", backbone="mf")
    model.eval()
    views = model.item_views(graph)
    hv, ht = views.per_modality
    att = model.attention
    logits = torch.stack([att.query(torch.tanh(att.project(h))).squeeze(1) for h in (hv, ht)], 1)
    alpha = torch.softmax(logits, 1)                                                  # eq. 7
    hc = alpha[:, :1] * hv + alpha[:, 1:] * ht                                        # eq. 8
    sv, st = hv - hc, ht - hc                                                         # eqs. 11-12
    beta = torch.softmax(torch.cat([model.query_final(x) for x in (hc, sv, st)], 1), 1)   # eq. 14
    h = beta[:, :1] * hc + beta[:, 1:2] * sv + beta[:, 2:] * st                       # eq. 15
    r = dense_interaction(data)
    hu = (r @ h) / r.sum(1, keepdim=True)                                              # eq. 16
    user = model.backbone.user_emb.weight + F.normalize(hu, dim=1)
    item = model.backbone.item_emb.weight + F.normalize(h, dim=1)
    reps = model(graph)
    torch.testing.assert_close(reps.user, user, rtol=1e-4, atol=1e-5)                 # eq. 17
    torch.testing.assert_close(reps.item, item, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_without_fusion_is_exactly_lattice():
    data, graph, model = setup("lattice", lambda_coeff=0.9, cf_layers=2)
    assert model.config.variant == "w/o fusion"
    model.eval()
    w = torch.softmax(model.modal_weights, 0)
    learned_raw = []
    for m in model.modalities:  # LATTICE: top-k of each modality's projected similarity, mixed, then normalised
        x = model.inputs.projections[m](torch.as_tensor(data.modalities[m]))
        xn = x / x.norm(dim=1, keepdim=True)
        sim = xn @ xn.T
        top = sim.topk(K, dim=1)
        learned_raw.append(torch.zeros_like(sim).scatter(1, top.indices, top.values.clamp_min(0)))
    mixed = w[0] * learned_raw[0] + w[1] * learned_raw[1]
    d = mixed.sum(1)
    learned = d.pow(-0.5)[:, None] * mixed * d.pow(-0.5)[None, :]
    original = w[0] * frozen_dense(data, "image") + w[1] * frozen_dense(data, "text")
    item_adj = 0.1 * learned + 0.9 * original
    h = item_adj @ model.backbone.item_embedding_table()
    adj, n_u = dense_adjacency(data), data.n_users
    e = torch.cat([model.backbone.user_emb.weight, model.backbone.item_emb.weight])
    cf = torch.stack([e, adj @ e, adj @ adj @ e]).mean(0)
    reps = model(graph)
    torch.testing.assert_close(reps.user, cf[:n_u], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.item, cf[n_u:] + F.normalize(h, dim=1), rtol=1e-4, atol=1e-5)


def test_without_fusion_has_no_contrastive_or_attention_terms():
    data, graph, model = setup("micro", variant="w/o fusion")
    terms = train_terms(model, graph, torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    assert set(terms) == {"bpr", "l2"}
    sum(terms.values()).backward()
    assert all(p.grad is None for p in model.attention.parameters())
    assert model.query_final.weight.grad is None


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("backbone", ["mf", "lightgcn", "ngcf"])
def test_every_variant_and_backbone_trains_a_step(variant, backbone):
    data, graph, model = setup("micro", variant=variant, backbone=backbone)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.on_epoch_start(0, graph)
    model.on_batch_start(0)
    terms = train_terms(model, graph, torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8]))
    assert all(torch.isfinite(v) for v in terms.values())
    assert ("contrastive" in terms) == (VARIANTS[variant]["fusion"] == "contrastive")
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    reps = model(graph)
    assert reps.user.shape == (data.n_users, 8) and reps.item.shape == (data.n_items, 8)


def test_single_modality_subset():
    data, graph, model = setup("micro", modalities=["text"])
    assert model.modalities == ["text"]
    terms = train_terms(model, graph, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert torch.isfinite(sum(terms.values()))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        setup("micro", variant="nonsense")
    with pytest.raises(ValueError, match="modalities"):
        setup("micro", modalities=["audio"])


@pytest.mark.parametrize("name", ["micro", "lattice"])
def test_trainable_features_fine_tunes_a_copy_of_the_raw_features(name):
    data, graph, model = setup(name, trainable_features=True)
    before = {m: model.inputs.features[m].detach().clone() for m in model.modalities}
    torch.testing.assert_close(before["image"], torch.as_tensor(data.modalities["image"]))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.on_epoch_start(0, graph)
    model.on_batch_start(0)                                  # a rebuild batch: gradient reaches the features
    sum(train_terms(model, graph, [0, 1], [2, 3], [4, 5]).values()).backward()
    opt.step()
    assert all(not torch.equal(model.inputs.features[m], before[m]) for m in model.modalities)
    torch.testing.assert_close(graph.nodes["item"].data["feat_image"], torch.as_tensor(data.modalities["image"]))
    _, _, fixed = setup(name)
    assert len(fixed.inputs.features) == 0                          # default: the features are fixed inputs
