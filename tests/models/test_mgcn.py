"""MGCN against dense references written from the paper's equations and the official code (Yu et al., MM'23)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dglmm.data.synthetic import make_synthetic
from dglmm.models import REGISTRY, Batch
from dglmm.models.mgcn import MGCNConfig
from dglmm.train.evaluate import evaluate_popularity
from dglmm.train.run import resolve_model_config, run_once
from tests.helpers import (
    build_model,
    dense_adjacency,
    dense_interaction,
    dense_knn,
    sym_norm_bipartite,
    tiny_dataset,
)

K = 4
D = 8


def setup(data=None, **options):
    return build_model("mgcn", data, graph_k=K, **{"knn_k": K, "embedding_dim": D, **options})


def linear(x, lin):
    return x @ lin.weight.T + (lin.bias if lin.bias is not None else 0)


def dense_purified(data, model, modality):
    x = model.inputs.features[modality] if model.config.trainable_features else torch.as_tensor(
        data.modalities[modality])
    aligned = linear(x, model.inputs.projections[modality])                                   # eq. 1
    return model.item_emb.weight * torch.sigmoid(linear(aligned, model.gate[modality]))      # eq. 2


def dense_ui_view(data, model, layers):
    adj = dense_adjacency(data)                                # D^-1/2 A D^-1/2, no self loops (eqs. 3-4)
    h = torch.cat([model.user_emb.weight, model.item_emb.weight])
    out, total = h, h
    for _ in range(layers):
        out = adj @ out
        total = total + out
    total = total / (layers + 1)                                                             # eq. 5
    return total[: data.n_users], total[data.n_users:]


def dense_tokens(data, model, norm="sym", user_modality="sym", item_layers=1):
    r = dense_interaction(data)
    tokens = {}
    for m in model.modalities:
        s = dense_knn(torch.as_tensor(data.modalities[m]), K, norm)                          # eqs. 6-8, raw features
        item = dense_purified(data, model, m)
        for _ in range(item_layers):
            item = s @ item                                                                    # eq. 9
        user = sym_norm_bipartite(r) @ item if user_modality == "sym" else (r @ item) / r.sum(1).clamp_min(1)[:, None]
        tokens[m] = torch.cat([user, item])                                                    # eq. 10
    return tokens


def dense_fusion(model, tokens, h_n, softmax="modalities", mean="with_common"):
    views = [tokens[m] for m in model.modalities]
    att = model.attention
    logits = torch.cat([torch.tanh(linear(v, att.project)) @ att.query.weight.T for v in views], 1)  # eq. 12
    alpha = torch.softmax(logits, 1 if softmax == "modalities" else 0)
    common = sum(alpha[:, i:i + 1] * v for i, v in enumerate(views))                         # eq. 13
    prefs = [torch.sigmoid(linear(h_n, model.prefer[m])) for m in model.modalities]          # eq. 11
    specific = [p * (v - common) for p, v in zip(prefs, views, strict=True)]                  # eq. 14
    if mean == "with_common":
        return (common + sum(specific)) / (len(views) + 1)                                    # the code's /3
    return common + sum(specific) / len(views)                                                # eq. 15


@torch.no_grad()
@pytest.mark.parametrize("trainable", [True, False])
def test_purifier_equals_dense_eqs_1_2(trainable):
    data, graph, model = setup(trainable_features=trainable)
    purified = model.purified(graph)
    for m in ("image", "text"):
        torch.testing.assert_close(purified[m], dense_purified(data, model, m), rtol=1e-5, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_user_item_view_is_lightgcn_eqs_3_to_5(layers):
    data, graph, model = setup(n_layers=layers)
    user, item = model.ui_view(graph)
    dense_user, dense_item = dense_ui_view(data, model, layers)
    torch.testing.assert_close(user, dense_user, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(item, dense_item, rtol=1e-5, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("norm,user_modality,item_layers", [("sym", "sym", 1), ("rw", "sym", 1),
                                                            ("sym", "mean", 1), ("sym", "sym", 2),
                                                            ("sym", "sym", 0)])
def test_item_item_view_equals_dense_eqs_6_to_10(norm, user_modality, item_layers):
    data, graph, model = setup(knn_norm=norm, user_modality=user_modality, item_layers=item_layers)
    tokens = model.modality_tokens(graph)
    expected = dense_tokens(data, model, norm, user_modality, item_layers)
    for m in ("image", "text"):
        torch.testing.assert_close(tokens[m], expected[m], rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_item_graphs_are_frozen_while_the_features_train():
    data, graph, model = setup()
    before = {m: g.graph.edata["w"].clone() for m, g in model._semantic.items()}
    with torch.no_grad():
        for f in model.inputs.features.values():
            f.mul_(-3.0).add_(1.0)
    model.modality_tokens(graph)
    for m, g in model._semantic.items():
        torch.testing.assert_close(g.graph.edata["w"], before[m])


@torch.no_grad()
@pytest.mark.parametrize("softmax", ["modalities", "nodes"])
@pytest.mark.parametrize("mean", ["with_common", "specific"])
def test_forward_equals_dense_fusion_eqs_11_to_18(softmax, mean):
    data, graph, model = setup(fusion_softmax=softmax, fusion_mean=mean)
    model.eval()
    user_n, item_n = dense_ui_view(data, model, 2)
    h_n = torch.cat([user_n, item_n])
    side = dense_fusion(model, dense_tokens(data, model), h_n, softmax, mean)
    reps = model(graph)
    torch.testing.assert_close(torch.cat([reps.user, reps.item]), h_n + side, rtol=1e-4, atol=1e-6)  # eq. 17
    scores = model.score(reps, torch.arange(data.n_users))
    torch.testing.assert_close(scores, reps.user @ reps.item.T)                                     # eq. 18


@torch.no_grad()
def test_one_modality_fusion():
    data = tiny_dataset(n_users=15, n_items=10, n=50, seed=3, modalities={"audio": 5})
    data, graph, model = setup(data)
    model.eval()
    tokens = model.modality_tokens(graph)
    user_n, item_n = model.ui_view(graph)
    h_m = model.fuse(tokens, torch.cat([user_n, item_n]))
    torch.testing.assert_close(h_m, tokens["audio"] / 2)  # alpha = 1, no specific part, (E_s + 0) / 2


def hand_info_nce(modal, ids, tau, critic):
    total = 0.0
    for a in range(len(modal)):  # eq. 16: positive (m_a, n_a); the denominator runs over (m_a, n_r) of every row r
        num = torch.exp(critic(modal[a], ids[a]) / tau)
        den = sum(torch.exp(critic(modal[a], ids[r]) / tau) for r in range(len(modal)))
        total = total - torch.log(num / den)
    return total / len(modal)


COS = lambda x, y: F.cosine_similarity(x, y, dim=0)  # noqa: E731


@pytest.mark.parametrize("critic", ["cosine", "dot"])
def test_info_nce_equals_hand_written_eq_16(critic):
    _, _, model = setup(cl_critic=critic)
    torch.manual_seed(1)
    modal, ids = torch.randn(7, 4), torch.randn(7, 4)
    torch.testing.assert_close(model.info_nce(modal, ids),
                               hand_info_nce(modal, ids, 0.2, COS if critic == "cosine" else torch.dot))


@pytest.mark.parametrize("distinct", [False, True])
def test_loss_terms_equal_the_official_objective(distinct):
    """BPR + reg_weight * ||final batch rows||^2 / (2B) + cl_weight * (InfoNCE of items + of users), the InfoNCE
    over the batch's rows (repeats included, as the official code) or over its distinct users and items."""
    data, graph, model = setup(cl_weight=0.05, reg_weight=0.001, cl_distinct=distinct)
    users, pos, neg = torch.tensor([0, 3, 3, 9, 4]), torch.tensor([1, 2, 5, 2, 7]), torch.tensor([4, 4, 7, 0, 3])
    batch = Batch(users, pos, neg)
    terms = model.loss(model.training_forward(graph, batch), batch)
    parts = model.encode(graph)
    u = parts["user_n"][users] + parts["user_m"][users]
    i, j = (parts["item_n"][x] + parts["item_m"][x] for x in (pos, neg))
    torch.testing.assert_close(terms["bpr"], -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean())
    torch.testing.assert_close(terms["l2"], 0.001 * 0.5 * sum(t.pow(2).sum() for t in (u, i, j)) / 5)
    cu, ci = (users.unique(), pos.unique()) if distinct else (users, pos)
    info = (hand_info_nce(parts["item_m"][ci], parts["item_n"][ci], 0.2, COS)
            + hand_info_nce(parts["user_m"][cu], parts["user_n"][cu], 0.2, COS))
    torch.testing.assert_close(terms["info"], 0.05 * info, rtol=1e-4, atol=1e-6)


def test_info_nce_over_all_users_and_items_and_l2_on_every_parameter():
    data, graph, model = setup(cl_items="all", cl_critic="dot", l2_on="all", reg_weight=0.01)
    batch = Batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    terms = model.loss(model.training_forward(graph, batch), batch)
    parts = model.encode(graph)
    info = (hand_info_nce(parts["user_m"], parts["user_n"], 0.2, torch.dot)
            + hand_info_nce(parts["item_m"], parts["item_n"], 0.2, torch.dot))                    # eq. 16 sums
    torch.testing.assert_close(terms["info"], 0.01 * info, rtol=1e-4, atol=1e-6)
    l2 = sum(p.pow(2).sum() for p in model.parameters())                                          # eq. 19
    torch.testing.assert_close(terms["l2"], 0.01 * l2)


def option_values():
    """Every value of every choice option of MGCN, one at a time, plus a few numbers."""
    out = []
    for f in dataclasses.fields(MGCNConfig):
        choices = f.metadata.get("choices") or ((True, False) if f.type in ("bool", bool) else ())
        out += [{f.name: v} for v in choices]
    return out + [{"modalities": ["image"]}, {"n_layers": 0}, {"item_layers": 2}, {"cl_weight": 0.0},
                  {"knn_k": 2}, {"cl_temperature": 0.5}]


@pytest.mark.parametrize("options", option_values(), ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_option_value_trains_a_step(options):
    data, graph, model = setup(**options)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    batch = Batch(torch.tensor([0, 1, 2, 5, 1]), torch.tensor([3, 4, 5, 6, 4]), torch.tensor([7, 8, 9, 1, 2]))
    terms = model.loss(model.training_forward(graph, batch), batch)
    loss = sum(terms.values())
    assert torch.isfinite(loss) and set(terms) == {"bpr", "l2", *(["info"] if model.config.cl_weight else [])}
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert {"user_emb.weight", "item_emb.weight"} <= changed
    assert any(k.startswith("gate.") for k in changed)
    if len(model.modalities) > 1:  # with one modality alpha = 1 and no specific part: the fuser has no gradient
        assert any(k.startswith("attention.") for k in changed) and any(k.startswith("prefer.") for k in changed)
    model.eval()
    with torch.no_grad():
        reps = model(graph)
    assert reps.user.shape == (data.n_users, D) and torch.isfinite(reps.item).all()


def test_the_registry_and_defaults_follow_the_official_code():
    cls = REGISTRY["mgcn"]
    config = cls.Config()
    assert (config.n_layers, config.item_layers, config.knn_k, config.knn_norm, config.cl_temperature,
            config.cl_weight, config.reg_weight, config.embedding_dim) == (2, 1, 10, "sym", 0.2, 0.01, 1e-4, 64)
    assert config.trainable_features and config.l2_on == "final" and not config.cl_distinct
    assert (config.fusion_softmax, config.fusion_mean, config.cl_critic) == ("modalities", "with_common", "cosine")


def test_mgcn_learns_the_planted_structure():
    """Five epochs on the synthetic data: MGCN beats the popularity ranker by a clear margin (test Recall@20
    .3710 against .2478 when written)."""
    data = make_synthetic()
    config = resolve_model_config("mgcn", "synthetic", [], ["train.progress=false", "train.epochs=5"])
    result = run_once("mgcn", data, config, None, graph_cache=False)
    popularity = evaluate_popularity(data)["recall@20"]
    assert result["test"]["recall@20"] > 1.3 * popularity, (result["test"]["recall@20"], popularity)
