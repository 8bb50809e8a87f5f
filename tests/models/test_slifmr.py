"""SLIF-MR against dense or looped references written from the paper's equations (eqs. 5-24)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import INTERACT_ETYPE, GraphConfig, build_graph, similar_etype
from dglmm.models import REGISTRY, make_config
from dglmm.models.slifmr import AGGREGATIONS, CORRELATE, SLIFMR, VARIANTS
from dglmm.nn.attention import RelationAttention
from dglmm.train.run import evaluate_run, prepare_run, resolve_model_config, run_once
from tests.helpers import train_terms

K = 4


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=60, n_items=50, interactions_per_user=6, n_clusters=3, n_kg_attributes=5,
                          modality_dims={"image": 6, "text": 4}, seed=3)


@pytest.fixture(scope="module")
def graph(data):
    return build_graph(data, GraphConfig(knn_k=K), cache_dir=False)


def model_for(data, graph, **options):
    options = {"embedding_dim": 8, "sge_top_n": 3, **options}
    return SLIFMR(data, graph, make_config(SLIFMR, options))


def dense(n_dst, n_src, src, dst, w):
    m = torch.zeros(n_dst, n_src)
    m.index_put_((dst.long(), src.long()), w.float(), accumulate=True)
    return m


def test_model_prunes_in_training_only_and_rederives_per_epoch(data, graph):
    model = model_for(data, graph, prune_ratio=0.3)
    n = graph.num_edges(INTERACT_ETYPE)
    model.train()
    model.on_epoch_start(2, graph)
    a = model.working(graph)
    assert a.cf.num_edges(INTERACT_ETYPE) == round(0.7 * n)
    kg_full = model.__class__(data, graph, model.config).eval().working(graph).kg.num_edges()
    assert a.kg.num_edges() < kg_full and a.kg.num_edges() % 2 == 0       # triples pruned with their reverse
    again = model_for(data, graph, prune_ratio=0.3).train()
    again.on_epoch_start(2, graph)
    assert torch.equal(again.working(graph).cf.edges(etype=INTERACT_ETYPE)[0], a.cf.edges(etype=INTERACT_ETYPE)[0])
    model.on_epoch_start(3, graph)
    assert not torch.equal(model.working(graph).cf.edges(etype=INTERACT_ETYPE)[0],
                           a.cf.edges(etype=INTERACT_ETYPE)[0])
    model.eval()
    assert model.working(graph).cf.num_edges(INTERACT_ETYPE) == n
    once = model_for(data, graph, prune_ratio=0.3, prune_schedule="once").train()
    once.on_epoch_start(0, graph)
    first = once.working(graph).cf.edges(etype=INTERACT_ETYPE)[0]
    once.on_epoch_start(5, graph)
    assert torch.equal(once.working(graph).cf.edges(etype=INTERACT_ETYPE)[0], first)


# -- the views (eqs. 5-13) and the fusion (eqs. 14-15) ---------------------------------------------------------
def dense_cf(model, data, graph):
    """Eq. 18's ``A^n`` densely: ``[[0, R_norm], [R_norm^T, G]]`` (users first)."""
    n_u, n_i = data.n_users, data.n_items
    u, i = graph.edges(etype=INTERACT_ETYPE)
    r = dense(n_u, n_i, i, u, torch.ones(len(u)))
    du, di = r.sum(1), r.sum(0)
    r = r / (du[:, None].clamp_min(1).sqrt() * di[None, :].clamp_min(1).sqrt())
    adj = torch.zeros(n_u + n_i, n_u + n_i)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = r, r.T
    if model.correlate.built:
        adj[n_u:, n_u:] = dense(n_i, n_i, model.correlate.src, model.correlate.dst, model.correlate.weight)
    return adj


@torch.no_grad()
@pytest.mark.parametrize("with_g", [False, True])
def test_interaction_view_is_residual_lightgcn_on_a_n(data, graph, with_g):
    model = model_for(data, graph, ui_layers=3).eval()
    if with_g:
        model.rebuild_correlate(graph)
    adj = dense_cf(model, data, graph)
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight])
    layers, e = [], e0
    for _ in range(3):
        e = adj @ e
        layers.append(e)
    expected = torch.stack(layers).mean(0) + e0                                             # eqs. 7-8
    user, item = model.interaction_view(model.working(graph))
    torch.testing.assert_close(torch.cat([user, item]), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("with_g", [False, True])
def test_feature_view_is_eq_9_on_s(data, graph, with_g):
    model = model_for(data, graph, mm_layers=2).eval()
    model.alpha.data = torch.tensor([0.3, -0.2, 0.5])
    if with_g:
        model.rebuild_correlate(graph)
    alpha = torch.softmax(model.alpha, 0)
    n = data.n_items
    s = torch.zeros(n, n)
    for k, m in enumerate(model.modalities):                                                  # eq. 5
        src, dst = graph.edges(etype=similar_etype(m))
        s_m = dense(n, n, src, dst, graph.edges[similar_etype(m)].data["w"])
        s += alpha[k] * s_m.fill_diagonal_(0)                                                # j != i (eq. 9)
    if with_g:
        s += alpha[-1] * dense(n, n, model.correlate.src, model.correlate.dst, model.correlate.weight)
    x0 = model.item_emb.weight
    expected = (s @ x0 + s @ s @ x0) / 2 + x0                                                 # eq. 9
    torch.testing.assert_close(model.feature_view(model.working(graph)), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_kg_view_equals_a_loop_over_triples(data, graph):
    model = model_for(data, graph, kg_layers=2).eval()
    model.rebuild_correlate(graph)
    kg = model.working(graph).kg
    rel_names = {CORRELATE[1]}
    assert kg.edata["rel"].max() == 2 * len(data.relation_names)                              # correlate: one more
    assert rel_names
    h0 = torch.cat([model.item_emb.weight, model.entity_emb.weight])
    att = model.kg_attention
    tails, heads = kg.edges()
    rel = kg.edata["rel"]
    logits = torch.stack([(h0[t] @ att.transform[r]) @ torch.tanh(h0[h] @ att.transform[r] + att.relation_emb[r])
                          for t, h, r in zip(tails.tolist(), heads.tolist(), rel.tolist(), strict=True)])  # eq. 11
    alpha = torch.zeros_like(logits)
    for h in heads.unique().tolist():                                                          # eq. 12
        mask = heads == h
        alpha[mask] = torch.softmax(logits[mask], 0)
    torch.testing.assert_close(att(kg, h0), alpha, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(RelationAttention.forward(att, kg, h0), alpha, rtol=1e-4, atol=1e-6)
    layers, h = [h0], h0
    for _ in range(2):                                                                         # eq. 10
        out = torch.zeros_like(h)
        for e in range(len(tails)):
            out[heads[e]] += alpha[e] * h[tails[e]]
        h = out
        layers.append(h)
    expected = torch.stack(layers).mean(0)[: data.n_items]                                    # eq. 13
    torch.testing.assert_close(model.kg_view(model.working(graph)), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_ailf_is_eqs_14_15(data, graph):
    model = model_for(data, graph).eval()
    views = model.item_views(graph)
    bar, tilde, hat = views.views
    w, b = model.ailf.weight, model.ailf.bias
    for i in range(0, data.n_items, 7):
        logits = (w @ torch.cat([bar[i], tilde[i], hat[i]]) + b) / math.sqrt(8)               # eq. 14
        a = torch.softmax(logits, 0)
        torch.testing.assert_close(views.fused[i], a[0] * bar[i] + a[1] * tilde[i] + a[2] * hat[i])  # eq. 15
    reps = model(graph)
    torch.testing.assert_close(reps.user, views.user)
    torch.testing.assert_close(reps.item, views.fused)


# -- SGE (eqs. 16-18) ---------------------------------------------------------------------------------------------
def test_correlate_after_first_epoch_has_n_edges_per_item_sym_normalised_and_follows_the_interval(data, graph):
    cfg = resolve_model_config("slifmr", "small", [], [
        "train.epochs=5", "train.patience=50", "train.batch_size=64", "train.progress=false",
        "model.embedding_dim=8", "model.sge_top_n=3", "model.graph_update_every=2"])
    prepared = prepare_run("slifmr", data, cfg)
    model, trainer = prepared.model, prepared.trainer
    versions, original = [], SLIFMR.on_epoch_end

    def record(self, epoch, g):
        original(self, epoch, g)
        versions.append(self.correlate.version)

    SLIFMR.on_epoch_end = record
    try:
        trainer.fit()
    finally:
        SLIFMR.on_epoch_end = original
    assert versions == [1, 1, 2, 2, 3]                                     # rebuilt after epochs 0, 2, 4
    c = model.correlate
    n = data.n_items
    assert torch.equal(torch.bincount(c.dst, minlength=n), torch.full((n,), 3))
    assert not (c.src == c.dst).any()
    model.eval()
    with torch.no_grad():
        fused = F.normalize(model.item_views(graph).fused, dim=1)
    model.rebuild_correlate(graph)   # from the views just computed (the fused x_i of eq. 15)
    sim = (fused @ fused.T).fill_diagonal_(-2)
    top = sim.topk(3, 1)
    g_tilde = torch.zeros(n, n).scatter(1, top.indices, top.values.clamp_min(0))             # eqs. 16-17
    deg = g_tilde.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    expected = inv[:, None] * g_tilde * inv[None, :]
    torch.testing.assert_close(dense(n, n, c.src, c.dst, c.weight), expected, rtol=1e-4, atol=1e-5)
    aug = c.attach(graph)
    assert CORRELATE in aug.canonical_etypes and aug.num_edges(CORRELATE) == 3 * n


def test_keep_mode_averages_the_last_two_graphs(data, graph):
    model = model_for(data, graph, sge_mode="keep").eval()
    model.rebuild_correlate(graph)
    first = dense(50, 50, model.correlate.src, model.correlate.dst, model.correlate.weight)
    with torch.no_grad():
        model.item_emb.weight.add_(torch.randn_like(model.item_emb.weight))
    replace = model_for(data, graph).eval()
    replace.load_state_dict(model.state_dict())
    replace.correlate.src = None
    model.rebuild_correlate(graph)
    replace.rebuild_correlate(graph)  # from the same parameters but without the previous graph in the views
    merged = dense(50, 50, model.correlate.src, model.correlate.dst, model.correlate.weight)
    assert merged.shape == first.shape and (merged > 0).sum() >= (first > 0).sum()
    torch.testing.assert_close(merged.sum(), (first.sum() + dense(50, 50, replace.correlate.src, replace.correlate.dst,
                                                                  replace.correlate.weight).sum()) / 2, rtol=0.5, atol=0)


# -- state, variants ---------------------------------------------------------------------------------------------
def small_config(**options):
    return resolve_model_config("slifmr", "small", [], [
        "train.epochs=3", "train.patience=50", "train.batch_size=128", "train.lr=0.01", "train.checkpoint_every=1",
        "train.progress=false", "model.cl_max_items=64", "model.embedding_dim=16",
        *(f"model.{k}={v}" for k, v in options.items())])


@pytest.fixture(scope="module")
def state_data():
    return make_synthetic(n_users=120, n_items=150, interactions_per_user=10, seed=5)


def test_correlate_travels_in_checkpoints_and_evaluate_reproduces_results(state_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    results = run_once("slifmr", state_data, small_config(), run, graph_cache=False)
    saved = json.loads((run / "results.json").read_text())
    for name in ("best.pt", "checkpoint.pt"):
        state = torch.load(run / name, weights_only=True)
        model_state = state["model"] if name == "best.pt" else state["model"]
        assert "src" in model_state["correlate._extra_state"]
    monkeypatch.setattr("dglmm.data.readers.load_dataset", lambda spec: state_data)
    assert evaluate_run(run) == saved["test"] == results["test"]


def test_interrupted_run_resumes_to_identical_results(state_data, tmp_path, monkeypatch):
    cfg = small_config(graph_update_every=2)
    reference = run_once("slifmr", state_data, cfg, tmp_path / "ref", graph_cache=False)
    per_epoch = -(-len(state_data.train) // 128)
    calls = {"n": 0}

    def interrupt(self, batch_index):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(SLIFMR, "on_batch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_once("slifmr", state_data, cfg, tmp_path / "cut", graph_cache=False)
    monkeypatch.undo()
    resumed = run_once("slifmr", state_data, cfg, tmp_path / "cut", resume=True, graph_cache=False)
    assert resumed["valid"] == reference["valid"] and resumed["test"] == reference["test"]


@pytest.mark.parametrize("variant,aggregation", [(v, "ailf") for v in VARIANTS]
                         + [("slifmr", a) for a in AGGREGATIONS if a != "ailf"]
                         + [("slifmr", "ailf")])
def test_every_variant_and_aggregation_trains_a_step(data, graph, variant, aggregation):
    model = model_for(data, graph, variant=variant, aggregator=aggregation, cl_negatives=16,
                      intra_loss="literal" if aggregation == "sum" else "uniformity")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    model.on_epoch_start(0, graph)
    for _ in range(2):  # the second step runs with the correlate relation of the first epoch's end
        terms = train_terms(model, graph, torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8]))
        assert all(torch.isfinite(v) for v in terms.values())
        assert ("inter" in terms) == VARIANTS[variant]["cl"]
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
        model.on_epoch_end(0, graph)
    assert model.correlate.built == VARIANTS[variant]["sge"]
    expected_views = 1 + VARIANTS[variant]["kg"] + VARIANTS[variant]["mm"]
    assert len(model.item_views(graph).views) == expected_views


def test_kg_variant_needs_a_kg(graph):
    plain = make_synthetic(n_users=40, n_items=30, interactions_per_user=5, kg=False,
                           modality_dims={"image": 4}, seed=1)
    g = build_graph(plain, GraphConfig(knn_k=3), cache_dir=False)
    with pytest.raises(ValueError, match="knowledge graph"):
        REGISTRY["slifmr"](plain, g, make_config(SLIFMR, {}))
    model = REGISTRY["slifmr"](plain, g, make_config(SLIFMR, {"variant": "w/o KG"}))
    assert model.view_names == ["interaction", "feature"]


def test_epoch_attention_schedule_equals_the_per_batch_values_without_relation_gradients(data, graph):
    batch_model = model_for(data, graph).train()
    epoch_model = model_for(data, graph, kg_attention_update="epoch").train()
    epoch_model.load_state_dict(batch_model.state_dict())
    for m in (batch_model, epoch_model):
        m.on_epoch_start(0, graph)
    a = batch_model.kg_view(batch_model.working(graph))
    b = epoch_model.kg_view(epoch_model.working(graph))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    b.sum().backward()
    assert epoch_model.kg_attention.transform.grad is None and epoch_model.item_emb.weight.grad is not None
    first = epoch_model._fixed_kg[1]
    epoch_model.kg_view(epoch_model.working(graph))
    assert epoch_model._fixed_kg[1] is first                       # reused within the epoch
    epoch_model.on_epoch_start(1, graph)
    epoch_model.kg_view(epoch_model.working(graph))
    assert epoch_model._fixed_kg[1] is not first                   # recomputed in the next one


def test_items_without_features_are_masked():
    from dglmm.data.robustness import perturb

    base = make_synthetic(n_users=60, n_items=80, interactions_per_user=6, n_clusters=3, n_kg_attributes=5,
                          modality_dims={"image": 6, "text": 4}, seed=4)
    noisy = perturb(base, features=0.2, seed=3)
    missing = torch.from_numpy(~noisy.feature_mask("image"))
    g = build_graph(noisy, GraphConfig(knn_k=K), cache_dir=False)
    model = model_for(noisy, g, mm_input="features").eval()
    with torch.no_grad():
        x0 = model.inputs.mean_projection(g)
        assert missing.any() and not x0[missing].any()                   # no modality: no projection term
        expected = torch.stack([model.inputs.projections[m](g.nodes["item"].data[f"feat_{m}"]) for m in ("image", "text")])
        torch.testing.assert_close(x0[~missing], expected.mean(0)[~missing])
    assert torch.isfinite(sum(train_terms(model.train(), g, [0, 1], [2, 3], [4, 5]).values()))
