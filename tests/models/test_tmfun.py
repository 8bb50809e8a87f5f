"""TMFUN against dense and brute-force references written from the paper's equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from dglmm.graph.build import GraphConfig, build_graph
from dglmm.models import REGISTRY, Batch, make_config
from dglmm.models.tmfun import VARIANTS
from tests.helpers import build_model, dense_adjacency, dense_interaction, dense_knn, tiny_dataset

K = 4
D = 8


def setup(**options):
    data = tiny_dataset(n_users=20, n_items=15, n=110, seed=3, modalities={"image": 7, "text": 5})
    return build_model("tmfun", data, graph_k=K, **{"embedding_dim": D, **options})


def batch():
    return Batch(torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]), torch.tensor([8, 9, 10, 11]))


@torch.no_grad()
@pytest.mark.parametrize("item_backend", ["csr", "dgl"])
@pytest.mark.parametrize("graph_input", ["id", "features"])
def test_views_equal_dense_graph_products(graph_input, item_backend):
    data, graph, model = setup(graph_input=graph_input, item_layers=2, graph_weights=[1.0, 3.0], cf_layers=2,
                               item_backend=item_backend)
    model.eval()
    _, views, side = model.views(graph)
    s = {m: dense_knn(torch.as_tensor(data.modalities[m]), K) for m in ("image", "text")}
    g_m = 0.25 * s["image"] + 0.75 * s["text"]                                          # eq. 4
    if graph_input == "id":
        inputs = {m: model.backbone.item_embedding_table() for m in s}
        mixed = model.backbone.item_embedding_table()
    else:
        inputs = {m: model.inputs.projections[m](torch.as_tensor(data.modalities[m])) for m in s}
        mixed = 0.25 * inputs["image"] + 0.75 * inputs["text"]
    adj, n_u = dense_adjacency(data), data.n_users
    e = torch.cat([model.backbone.user_emb.weight, model.backbone.item_emb.weight])
    cf = torch.stack([e, adj @ e, adj @ adj @ e]).mean(0)                                 # LightGCN, 2 layers
    expected = [cf[n_u:], *(s[m] @ (s[m] @ inputs[m]) for m in ("image", "text")), g_m @ (g_m @ mixed)]
    assert model.modalities == ["image", "text"] and views.shape == (4, data.n_items, D)
    for got, want in zip(views, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for got, want in zip(side, expected[1:3], strict=True):                              # fusion_input="graph"
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def brute_force_scores(model, reps, pairs):
    """Eqs. 2-3, 5-7 by a Python loop over (user, item, view)."""
    views = reps.extras["views"]
    out = []
    for u, i in pairs:
        logits = [float(reps.extras["query"][u] @ views[q, i]) / math.sqrt(D) for q in range(len(views))]
        z = sum(math.exp(x) for x in logits)
        h = sum(math.exp(logits[q]) / z * views[q, i] for q in range(len(views)))      # eqs. 2-3
        y_i = views[0, i] + reps.extras["fusion"][i] + h                                 # eqs. 5-6: x~i + h^f + h_ui
        out.append(float(reps.user[u] @ y_i))                                            # eq. 7
    return torch.tensor(out)


@torch.no_grad()
@pytest.mark.parametrize("user_rep", ["cf", "cf+items"])
def test_attention_and_scores_equal_brute_force_loop(user_rep):
    data, graph, model = setup(user_rep=user_rep, fusion_weights=[2.0, 1.0])
    model.eval()
    reps = model(graph)
    h_f = (2 * reps.extras["side"][0] + reps.extras["side"][1]) / 3                      # mu = 2/3 (eq. 5)
    torch.testing.assert_close(reps.extras["fusion"], h_f)
    if user_rep == "cf+items":
        r = dense_interaction(data)
        torch.testing.assert_close(reps.user, reps.extras["query"] + (r @ h_f) / r.sum(1, keepdim=True).clamp_min(1))
    pairs = [(u, i) for u in range(data.n_users) for i in range(data.n_items)]
    expected = brute_force_scores(model, reps, pairs)
    users = torch.tensor([p[0] for p in pairs])
    items = torch.tensor([p[1] for p in pairs])
    torch.testing.assert_close(model.pair_score(reps, users, items), expected, rtol=1e-4, atol=1e-5)
    full = model.score(reps, torch.arange(data.n_users))
    torch.testing.assert_close(full.reshape(-1), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("options", [{}, {"attention": "item"}, {"variant": "tmfun-att"},
                                     {"variant": "tmfun-mm"}, {"backbone": "ngcf", "user_rep": "cf+items"},
                                     {"graph_input": "features", "fusion_input": "projected"}])
def test_chunked_full_ranking_equals_per_pair_formula(options):
    data, graph, model = setup(**options)
    model.eval()
    reps = model(graph)
    chunks = [model.score(reps, torch.arange(a, min(a + 7, data.n_users))) for a in range(0, data.n_users, 7)]
    scores = torch.cat(chunks)
    users = torch.arange(data.n_users).repeat_interleave(data.n_items)
    items = torch.arange(data.n_items).repeat(data.n_users)
    torch.testing.assert_close(scores.reshape(-1), model.pair_score(reps, users, items), rtol=1e-4, atol=1e-5)


def test_mmbpr_and_contrastive_equal_hand_written_formulas():
    data, graph, model = setup(cl_temperature=0.3)
    reps = model(graph)
    b = batch()
    y_u, side, anchor = reps.user[b.users], reps.extras["side"], reps.extras["views"][0]
    mmbpr = 0.0
    for h in side:                                                                       # eq. 10
        for k in range(len(b.users)):
            diff = y_u[k] @ h[b.pos[k]] - y_u[k] @ h[b.neg[k]]
            mmbpr = mmbpr - torch.log(torch.sigmoid(diff)) / len(b.users)
    torch.testing.assert_close(model.mmbpr_loss(reps, b.users, b.pos, b.neg), mmbpr)

    def mi(x, y, i):  # log of the InfoNCE ratio with cosine critic, negatives y_j over all items
        cos = lambda p, q: F.cosine_similarity(p, q, dim=0) / 0.3  # noqa: E731
        return cos(x[i], y[i]) - torch.log(sum(torch.exp(cos(x[i], y[j])) for j in range(len(y))))

    n = data.n_items
    total = 0.0
    for h in side:                                                                       # eq. 8
        total = total + sum(0.5 * (mi(h, anchor, i) + mi(anchor, h, i)) for i in range(n)) / n
    torch.testing.assert_close(model.contrastive_loss(reps), -total / len(side), rtol=1e-4, atol=1e-5)
    items = torch.tensor([1, 4, 6])
    sub = 0.0
    for h in side:
        hs, a = h[items], anchor[items]
        sub = sub + sum(0.5 * (mi(hs, a, i) + mi(a, hs, i)) for i in range(3)) / 3
    torch.testing.assert_close(model.contrastive_loss(reps, items), -sub / len(side), rtol=1e-4, atol=1e-5)


def test_loss_terms_of_eq_11():
    data, graph, model = setup(mmbpr_weight=0.1, cl_weight=0.2, reg_weight=0.01)
    b = batch()
    reps = model.training_forward(graph, b)
    terms = model.loss(reps, b)
    assert set(terms) == {"bpr", "l2", "mmbpr", "contrastive"}
    pos, neg = model.pair_score(reps, b.users, b.pos), model.pair_score(reps, b.users, b.neg)
    torch.testing.assert_close(terms["bpr"], -torch.log(torch.sigmoid(pos - neg)).mean())
    torch.testing.assert_close(terms["mmbpr"], 0.1 * model.mmbpr_loss(reps, b.users, b.pos, b.neg))
    torch.testing.assert_close(terms["contrastive"], 0.2 * model.contrastive_loss(reps))


def test_tmfun_mm_uses_no_features_and_tmfun_att_no_attention():
    _, graph, mm = setup(variant="tmfun-mm", graph_input="features")
    assert len(mm.inputs.projections) == 0 and mm.graph_input == "id"
    assert set(mm.loss(mm.training_forward(graph, batch()), batch())) == {"bpr", "l2"}
    _, graph, att = setup(variant="tmfun-att")
    reps = att(graph)
    assert not att.per_interaction
    torch.testing.assert_close(reps.item, reps.extras["views"][0] + reps.extras["fusion"]
                               + reps.extras["views"].mean(0))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("backbone", ["mf", "lightgcn", "ngcf"])
def test_every_variant_and_backbone_trains_a_step(variant, backbone):
    data, graph, model = setup(variant=variant, backbone=backbone, cl_items="batch")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    b = batch()
    terms = model.loss(model.training_forward(graph, b), b)
    assert all(torch.isfinite(v) for v in terms.values())
    assert ("contrastive" in terms) == (variant != "tmfun-mm")
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    reps = model(graph)
    assert reps.user.shape == (data.n_users, D) and reps.item.shape == (data.n_items, D)


@torch.no_grad()
def test_items_without_a_modality_get_zero_projected_features():
    data = tiny_dataset(n_users=20, n_items=15, n=110, seed=3, modalities={"image": 7, "text": 5})
    data.modalities["image"][[2, 9]] = 0.0
    graph = build_graph(data, GraphConfig(knn_k=K), cache_dir=False)
    cls = REGISTRY["tmfun"]
    model = cls(data, graph, make_config(cls, {"embedding_dim": D, "graph_input": "features"}))
    torch.nn.init.normal_(model.inputs.projections["image"].bias)
    image, text = model.inputs.projected(graph)
    assert image[[2, 9]].abs().sum() == 0 and image.abs().sum(1).gt(0).sum() == 13 and text.abs().sum(1).gt(0).all()


def test_single_modality_and_bad_options():
    _, graph, model = setup(modalities=["text"])
    assert model.modalities == ["text"] and model(graph).extras["views"].shape[0] == 3
    with pytest.raises(ValueError, match="graph_weights"):
        setup(graph_weights=[1.0])
    with pytest.raises(ValueError, match="modalities"):
        setup(modalities=["audio"])
    with pytest.raises(ValueError, match="model.variant"):
        setup(variant="tmfun-nonsense")
    with pytest.raises(ValueError, match="model.cl_temperature"):
        setup(cl_temperature=0.0)


def test_tmfun_beats_lightgcn_on_synthetic_data():
    """End to end (as tests/train/test_end_to_end.py): the planted features carry signal LightGCN cannot use."""
    from dglmm.data.synthetic import make_synthetic
    from tests.train.test_end_to_end import train

    data = make_synthetic()
    light = train("lightgcn", data)["test"]["recall@20"]
    tmfun = train("tmfun", data, "model.cl_max_items=512")["test"]["recall@20"]
    assert tmfun > light + 0.005
