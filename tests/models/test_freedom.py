"""FREEDOM against dense references written from the paper's equations (eqs. 1-13) and the official code."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import INTERACT_ETYPE, GraphConfig, build_graph
from dglmm.graph.ops import prune_interactions, pruning_generator
from dglmm.models import Batch, make_config
from dglmm.models.freedom import FREEDOM, modality_weights
from dglmm.nn.losses import l2_penalty
from dglmm.options import OptionError
from dglmm.train.evaluate import evaluate_popularity
from dglmm.train.run import resolve_model_config, run_once
from tests.helpers import dense_adjacency, dense_knn, sym_norm_bipartite, tiny_dataset, train_terms

K = 3
D = 8


@pytest.fixture(scope="module")
def data():
    return tiny_dataset(n_users=25, n_items=18, n=140, seed=5, modalities={"image": 7, "text": 5})


@pytest.fixture(scope="module")
def graph(data):
    return build_graph(data, GraphConfig(knn_k=K), cache_dir=False)


def model_for(data, graph, **options):
    torch.manual_seed(0)
    return FREEDOM(data, graph, make_config(FREEDOM, {"embedding_dim": D, **options}))


def batch():
    return Batch(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11, 12, 13, 0]))


def binary_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Eqs. 1-3 densely: cosine, 0/1 top-k per row (self included), ``D^-1/2 S D^-1/2`` with row sums ``D``."""
    xn = x / x.norm(dim=1, keepdim=True)
    s = torch.zeros(len(x), len(x)).scatter(1, (xn @ xn.T).topk(k, dim=1).indices, 1.0)
    inv = s.sum(1).pow(-0.5)
    return inv[:, None] * s * inv[None, :]


def frozen_graph(data, weights: str = "binary", alpha: float = 0.1) -> torch.Tensor:
    """Eq. 4: ``S = alpha S^image + (1 - alpha) S^text``."""
    make = binary_knn if weights == "binary" else dense_knn
    s = {m: make(torch.as_tensor(data.modalities[m]), K) for m in ("image", "text")}
    return alpha * s["image"] + (1 - alpha) * s["text"]


# -- the frozen item-item graph (eqs. 1-4, 7-8) -------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("backend", ["csr", "dgl"])
@pytest.mark.parametrize("weights", ["binary", "cosine"])
def test_item_propagation_is_the_dense_modality_weighted_frozen_graph(data, graph, backend, weights):
    eye = torch.eye(data.n_items)
    s = frozen_graph(data, weights)
    for layers, expected in ((1, s), (2, s @ s)):
        model = model_for(data, graph, backend=backend, item_graph_weights=weights, item_layers=layers)
        torch.testing.assert_close(model.item_propagate(graph, eye), expected, rtol=1e-5, atol=1e-6)
    if weights == "binary":  # every row holds k entries: each weight is 1/k, as the official code's
        image = binary_knn(torch.as_tensor(data.modalities["image"]), K)
        torch.testing.assert_close(image[image > 0], torch.full((K * data.n_items,), 1.0 / K))
    half = model_for(data, graph, image_weight=0.5, backend=backend, item_graph_weights=weights)
    torch.testing.assert_close(half.item_propagate(graph, eye), frozen_graph(data, weights, 0.5), rtol=1e-5,
                               atol=1e-6)


def test_modality_weights_give_image_alpha_and_share_the_rest():
    torch.testing.assert_close(modality_weights(["image", "text"], 0.1), torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(modality_weights(["audio", "image"], 0.1), torch.tensor([0.9, 0.1]))
    torch.testing.assert_close(modality_weights(["audio", "image", "text"], 0.2), torch.tensor([0.4, 0.2, 0.4]))
    torch.testing.assert_close(modality_weights(["audio", "text"], 0.1), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(modality_weights(["image"], 0.1), torch.tensor([1.0]))


def test_the_frozen_graph_never_changes_in_training(data, graph):
    model = model_for(data, graph)
    eye = torch.eye(data.n_items)
    before = model.item_propagate(graph, eye).detach()
    features = model.inputs.features["image"].detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.train()
    for epoch in range(3):
        model.on_epoch_start(epoch, graph)
        b = batch()
        sum(train_terms(model, graph, b.users, b.pos, b.neg).values()).backward()
        optimizer.step()
    assert not torch.equal(model.inputs.features["image"], features)   # fine-tuned features, frozen graph
    torch.testing.assert_close(model.item_propagate(graph, eye), before)


# -- degree-sensitive pruning (eqs. 5-6) -------------------------------------------------------------------------
def successive_sampling_inclusion(p: torch.Tensor, keep: int) -> torch.Tensor:
    """Exact inclusion probability of every edge when ``keep`` edges are drawn one by one without replacement,
    each draw proportional to ``p`` among those left (``torch.multinomial(p, keep)``): a sum over all ordered
    draws."""
    p = p.double().tolist()
    incl = [0.0] * len(p)
    for seq in itertools.permutations(range(len(p)), keep):
        prob, left = 1.0, sum(p)
        for e in seq:
            prob *= p[e] / left
            left -= p[e]
        for e in seq:
            incl[e] += prob
    return torch.tensor(incl, dtype=torch.float64)


def test_pruning_draws_edges_with_the_degree_sensitive_probabilities():
    """Over many seeded draws the kept share of every edge matches the exact inclusion probability of weighted
    sampling without replacement with ``p_e = 1/sqrt(d_u d_i)`` (eq. 5); the kept graph is normalised on its own
    degrees (eq. 6)."""
    users = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    items = torch.tensor([0, 1, 2, 3, 0, 1, 0])
    d_u, d_i = torch.bincount(users).float(), torch.bincount(items).float()
    p = 1 / (d_u[users] * d_i[items]).sqrt()
    keep = 3
    ratio = 1 - keep / len(users)
    draws = 10000
    counts = torch.zeros(len(users))
    for stream in range(draws):
        u, i, w = prune_interactions(users, items, 3, 4, ratio, pruning_generator(11, stream))
        assert len(u) == keep
        r = torch.zeros(3, 4).index_put_((u, i), torch.ones(keep))
        torch.testing.assert_close(w, sym_norm_bipartite(r)[u, i])
        counts += ((u * 4 + i)[:, None] == (users * 4 + items)[None, :]).float().sum(0)
    expected = successive_sampling_inclusion(p, keep)
    assert torch.isclose(expected.sum(), torch.tensor(float(keep), dtype=torch.float64))
    observed = counts.double() / draws
    sd = (expected * (1 - expected) / draws).sqrt()
    assert ((observed - expected).abs() <= 5 * sd + 1e-9).all(), (observed, expected)
    # the reading that matters: the edge between the two most popular nodes is kept least often
    assert observed.argmin() == 0 and expected.argmin() == 0


def test_model_prunes_per_epoch_in_training_only_and_rederives_each_draw(data, graph):
    model = model_for(data, graph, prune_ratio=0.6).train()
    n = graph.num_edges(INTERACT_ETYPE)
    model.on_epoch_start(4, graph)
    pruned = model.user_item_graph(graph)
    u, i = pruned.edges(etype=INTERACT_ETYPE)
    assert len(u) == round(0.4 * n)
    train_pairs = {tuple(x) for x in data.train.tolist()}
    assert {(a, b) for a, b in zip(u.tolist(), i.tolist(), strict=True)} <= train_pairs
    r = torch.zeros(data.n_users, data.n_items).index_put_((u, i), torch.ones(len(u)))
    torch.testing.assert_close(pruned.edges[INTERACT_ETYPE].data["w"], sym_norm_bipartite(r)[u, i])
    again = model_for(data, graph, prune_ratio=0.6, prune_seed=int(model.prune_seed)).train()
    again.on_epoch_start(4, graph)
    assert torch.equal(again.user_item_graph(graph).edges(etype=INTERACT_ETYPE)[0], u)
    model.on_epoch_start(5, graph)
    assert not torch.equal(model.user_item_graph(graph).edges(etype=INTERACT_ETYPE)[0], u)
    assert model.eval().user_item_graph(graph) is graph
    once = model_for(data, graph, prune_ratio=0.6, prune_schedule="once").train()
    once.on_epoch_start(0, graph)
    first = once.user_item_graph(graph).edges(etype=INTERACT_ETYPE)[0]
    once.on_epoch_start(7, graph)
    assert torch.equal(once.user_item_graph(graph).edges(etype=INTERACT_ETYPE)[0], first)
    for off in ({"prune_schedule": "none"}, {"prune_ratio": 0.0}):
        assert model_for(data, graph, **off).train().user_item_graph(graph) is graph


def test_prune_seed_follows_the_run_seed(data, graph):
    torch.manual_seed(1)
    a = FREEDOM(data, graph, make_config(FREEDOM, {"embedding_dim": D}))
    torch.manual_seed(1)
    b = FREEDOM(data, graph, make_config(FREEDOM, {"embedding_dim": D}))
    torch.manual_seed(2)
    c = FREEDOM(data, graph, make_config(FREEDOM, {"embedding_dim": D}))
    assert int(a.prune_seed) == int(b.prune_seed) != int(c.prune_seed)
    assert "prune_seed" in a.state_dict()


# -- propagation (eqs. 9-11) and the loss (eqs. 12-13) -------------------------------------------------------------
@pytest.mark.parametrize("backend", ["csr", "dgl"])
def test_forward_is_lightgcn_on_the_pruned_graph_plus_the_item_graph(data, graph, backend):
    model = model_for(data, graph, backend=backend, ui_layers=2, prune_ratio=0.5)
    e = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    item_part = frozen_graph(data) @ model.item_emb.weight.detach()
    n_u = data.n_users

    def lightgcn(adj):
        return torch.stack([e, adj @ e, adj @ adj @ e]).mean(0)

    with torch.no_grad():
        model.train()
        model.on_epoch_start(2, graph)
        out = model(graph)
        u, i = model.user_item_graph(graph).edges(etype=INTERACT_ETYPE)
        r = sym_norm_bipartite(torch.zeros(n_u, data.n_items).index_put_((u, i), torch.ones(len(u))))
        adj = torch.zeros(len(e), len(e))
        adj[:n_u, n_u:], adj[n_u:, :n_u] = r, r.T
        cf = lightgcn(adj)
        torch.testing.assert_close(out.user, cf[:n_u], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.item, cf[n_u:] + item_part, rtol=1e-5, atol=1e-6)
        full = model.eval()(graph)
        cf = lightgcn(dense_adjacency(data))
        torch.testing.assert_close(full.user, cf[:n_u], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(full.item, cf[n_u:] + item_part, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.score(full, torch.tensor([0, 3])), full.user[[0, 3]] @ full.item.T)


@pytest.mark.parametrize("trainable", [True, False])
def test_loss_terms_equal_the_hand_written_bpr_sums(data, graph, trainable):
    lam, reg = 0.3, 0.01
    model = model_for(data, graph, modality_bpr_weight=lam, reg_weight=reg, trainable_features=trainable).train()
    model.on_epoch_start(1, graph)
    b = batch()
    terms = model.loss(model.training_forward(graph, b), b)
    out = model(graph)
    hu, hi, hj = out.user[b.users], out.item[b.pos], out.item[b.neg]
    by_hand = -torch.log(torch.sigmoid((hu * hi).sum(1) - (hu * hj).sum(1))).mean()
    modal = 0.0
    for m in ("image", "text"):
        lin = model.inputs.projections[m]
        x = torch.as_tensor(data.modalities[m]) @ lin.weight.T + lin.bias             # x~^m = W_m x^m + b_m
        modal = modal - torch.log(torch.sigmoid((hu * x[b.pos]).sum(1) - (hu * x[b.neg]).sum(1))).mean()
    ego = (model.user_emb.weight[b.users], model.item_emb.weight[b.pos], model.item_emb.weight[b.neg])
    assert set(terms) == {"bpr", "modality_bpr", "l2"}
    torch.testing.assert_close(terms["bpr"], by_hand)
    torch.testing.assert_close(terms["modality_bpr"], lam * modal)
    torch.testing.assert_close(terms["l2"], reg * l2_penalty(*ego))
    sum(terms.values()).backward()
    assert (len(model.inputs.features) == 2) == trainable
    if trainable:  # the official code fine-tunes the raw features through the modality BPR
        grad = model.inputs.features["image"].grad
        rows = torch.unique(torch.cat([b.pos, b.neg]))
        outside = torch.ones(data.n_items, dtype=torch.bool)
        outside[rows] = False
        assert (grad[rows].abs().sum(1) > 0).all() and (grad[outside] == 0).all()
    assert set(model_for(data, graph, modality_bpr_weight=0.0).loss(out, b)) == {"bpr"}


def test_csr_and_dgl_backends_have_equal_outputs_and_gradients(data, graph):
    grads = []
    for backend in ("csr", "dgl"):
        model = model_for(data, graph, backend=backend).train()
        model.on_epoch_start(3, graph)
        b = batch()
        sum(model.loss(model.training_forward(graph, b), b).values()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# -- options ------------------------------------------------------------------------------------------------------
OPTION_VALUES = [
    {}, {"item_graph_weights": "cosine"}, {"prune_schedule": "once"}, {"prune_schedule": "none"},
    {"prune_ratio": 0.0}, {"prune_ratio": 0.9}, {"prune_seed": 7}, {"trainable_features": False},
    {"modality_bpr_weight": 0.0}, {"backend": "dgl"}, {"ui_layers": 0}, {"item_layers": 0}, {"item_layers": 2},
    {"modalities": ["image"]}, {"modalities": ["text"]}, {"image_weight": 1.0}, {"reg_weight": 1e-3},
]


@pytest.mark.parametrize("options", OPTION_VALUES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_every_option_value_trains_a_step(data, graph, options):
    model = model_for(data, graph, **options).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.on_epoch_start(0, graph)
    before = model.user_emb.weight.detach().clone()
    terms = model.loss(model.training_forward(graph, batch()), batch())
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.user_emb.weight)
    scores = model.score(model.eval()(graph), torch.arange(4))
    assert scores.shape == (4, data.n_items) and torch.isfinite(scores).all()


@pytest.mark.parametrize("bad,match", [
    ({"modalities": []}, "model.modalities"), ({"modalities": ["image", "image"]}, "model.modalities"),
    ({"image_weight": 1.5}, "model.image_weight"), ({"prune_ratio": 1.0}, "model.prune_ratio"),
    ({"item_graph_weights": "learned"}, "model.item_graph_weights"), ({"prune_seed": -1}, "model.prune_seed"),
])
def test_bad_options_name_the_option(bad, match):
    with pytest.raises(OptionError, match=match):
        make_config(FREEDOM, bad)


# -- end to end and resume -----------------------------------------------------------------------------------------
def test_freedom_learns_the_synthetic_data():
    """End to end (as tests/test_end_to_end.py): clearly above the popularity ranker."""
    from tests.test_end_to_end import train

    data = make_synthetic()
    popularity = evaluate_popularity(data)["recall@20"]
    assert train("freedom", data)["test"]["recall@20"] > 1.3 * popularity


def small_config(**options):
    return resolve_model_config("freedom", "small", [], [
        "train.epochs=4", "train.patience=50", "train.batch_size=128", "train.lr=0.01", "train.checkpoint_every=1",
        "train.progress=false", "model.embedding_dim=16", *(f"model.{k}={v}" for k, v in options.items())])


def test_interrupted_run_resumes_to_the_uninterrupted_pruned_graphs_and_results(tmp_path, monkeypatch):
    """Killed in its second epoch and resumed, a run sees the same pruned graph at every epoch and ends with the
    same metrics: each draw is a function of the saved ``prune_seed`` and the epoch."""
    data = make_synthetic(n_users=120, n_items=150, interactions_per_user=10, seed=5)
    seen: dict[str, dict[int, torch.Tensor]] = {"ref": {}, "cut": {}}
    original = FREEDOM.user_item_graph

    def record(name):
        def user_item_graph(self, graph):
            g = original(self, graph)
            if self.training:
                seen[name][self._epoch] = g.edges(etype=INTERACT_ETYPE)[0].clone()
            return g
        return user_item_graph

    monkeypatch.setattr(FREEDOM, "user_item_graph", record("ref"))
    reference = run_once("freedom", data, small_config(), tmp_path / "ref", graph_cache=False)
    per_epoch = math.ceil(len(data.train) / 128)
    calls = {"n": 0}

    def interrupt(self, batch_index):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(FREEDOM, "user_item_graph", record("cut"))
    monkeypatch.setattr(FREEDOM, "on_batch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_once("freedom", data, small_config(), tmp_path / "cut", graph_cache=False)
    monkeypatch.setattr(FREEDOM, "on_batch_start", lambda self, i: None)
    resumed = run_once("freedom", data, small_config(), tmp_path / "cut", resume=True, graph_cache=False)
    assert sorted(seen["ref"]) == sorted(seen["cut"]) == [0, 1, 2, 3]
    for epoch, edges in seen["ref"].items():
        assert torch.equal(seen["cut"][epoch], edges)
    assert not torch.equal(seen["ref"][0], seen["ref"][1])
    assert resumed["valid"] == reference["valid"] and resumed["test"] == reference["test"]


def test_modality_bpr_projects_only_the_batch_items_with_the_full_projection_values(data, graph):
    model = model_for(data, graph)
    b = batch()
    out = model(graph)
    hu = out.user[b.users]
    total = 0.0
    for m in model.modalities:
        x = model.inputs.project(graph, m)
        total = total + F.softplus((hu * x[b.neg]).sum(1) - (hu * x[b.pos]).sum(1)).mean()
    torch.testing.assert_close(model.modality_bpr(out, b), total)
