"""CAmgr as MGCN plus three changes: every rung of the ladder is one config, and its bottom rung is MGCN."""

import pytest
import torch

from dglmm.graph.build import GraphConfig, build_graph
from dglmm.models import REGISTRY, Batch, make_config
from dglmm.models.camgr import CHANGES, LADDER, MGCN_READINGS
from dglmm.options import inactive_options
from tests.helpers import dense_interaction, tiny_dataset

K = 4
SMALL = {"knn_k": K, "embedding_dim": 8}


@pytest.fixture(scope="module")
def data_graph():
    data = tiny_dataset(n_users=25, n_items=18, n=120, seed=5, modalities={"image": 7, "text": 5})
    return data, build_graph(data, GraphConfig(knn_k=K), cache_dir=False)


def make(name, data_graph, seed=0, **options):
    data, graph = data_graph
    cls = REGISTRY[name]
    torch.manual_seed(seed)
    return cls(data, graph, make_config(cls, {**SMALL, **options}))


BATCH = Batch(torch.tensor([0, 3, 3, 9, 4]), torch.tensor([1, 2, 5, 2, 7]), torch.tensor([4, 4, 7, 0, 3]))


def test_the_bottom_rung_computes_mgcn(data_graph):
    """CAmgr with its three changes off and MGCN's readings: the same parameters, scores and loss as ``mgcn``."""
    _, graph = data_graph
    label, options = LADDER[0]
    assert label == "MGCN" and {k: options[k] for k in CHANGES} == {k: v[0] for k, v in CHANGES.items()}
    camgr, mgcn = make("camgr", data_graph, **options), make("mgcn", data_graph)
    state, expected = camgr.state_dict(), mgcn.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value)
    for model in (camgr, mgcn):
        model.train()
    terms = camgr.loss(camgr.training_forward(graph, BATCH), BATCH)
    reference = mgcn.loss(mgcn.training_forward(graph, BATCH), BATCH)
    assert set(terms) == set(reference) == {"bpr", "l2", "info"}
    for name, value in reference.items():
        torch.testing.assert_close(terms[name], value)
    camgr.eval()
    mgcn.eval()
    with torch.no_grad():
        torch.testing.assert_close(camgr(graph).user, mgcn(graph).user)
        torch.testing.assert_close(camgr(graph).item, mgcn(graph).item)


def test_the_ladder_adds_one_change_per_rung_then_reaches_camgr():
    rungs = [options for _, options in LADDER[:4]]
    for lower, upper in zip(rungs, rungs[1:], strict=False):
        assert sum(lower[k] != upper[k] for k in CHANGES) == 1
        assert all(upper[k] == v for k, v in MGCN_READINGS.items())
    assert {k: rungs[3][k] for k in CHANGES} == {k: v[1] for k, v in CHANGES.items()}
    config = make_config(REGISTRY["camgr"], LADDER[4][1])
    assert config == make_config(REGISTRY["camgr"], {})                 # the CAmgr rung is the defaults
    assert all(getattr(config, k) == v[1] for k, v in CHANGES.items())  # whose changes are all on


@pytest.mark.parametrize("rung", range(len(LADDER)), ids=[label for label, _ in LADDER])
def test_every_rung_trains_a_step(rung, data_graph):
    data, graph = data_graph
    model = make("camgr", data_graph, **LADDER[rung][1])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    model.on_batch_start(0)
    terms = model.loss(model.training_forward(graph, BATCH), BATCH)
    loss = sum(terms.values())
    assert torch.isfinite(loss) and set(terms) == {"bpr", "l2", "info"}
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    options = {**make_config(REGISTRY["camgr"], {}).__dict__, **LADDER[rung][1]}
    fusion = {"cross", "common_branch", "distinct_branch", "gate_common", "gate_distinct"}
    assert ("encoder" in changed) == (options["ui_view"] == "gat")
    assert bool(fusion & changed) == (options["fusion"] == "cross_attention")
    assert ({"attention", "prefer"} <= changed) == (options["fusion"] == "attention")
    model.eval()
    with torch.no_grad():
        reps = model(graph)
    assert reps.user.shape == (data.n_users, 8) and torch.isfinite(reps.item).all()


NEW_OPTIONS = [
    {"ui_view": "lightgcn", "n_layers": 3}, {"fusion": "attention", "fusion_softmax": "nodes"},
    {"fusion": "attention", "fusion_mean": "specific"}, {"fusion": "attention", "modalities": ["image"]},
    {"user_modality": "sym"}, {"linear_init": "default"}, {"cl_distinct": False}, {"item_layers": 2},
    {"variant": "w/o IUID", "fusion": "attention"}, {"variant": "w/o CAFF", "ui_view": "lightgcn"},
    {"id_guide": "item", "ui_view": "lightgcn", "knn_source": "purified"},
]


@pytest.mark.parametrize("options", NEW_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_the_options_shared_with_mgcn_train_a_step(options, data_graph):
    _, graph = data_graph
    model = make("camgr", data_graph, **options)
    model.train()
    model.on_batch_start(0)
    loss = sum(model.loss(model.training_forward(graph, BATCH), BATCH).values())
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.user_emb.parameters())


@torch.no_grad()
def test_lightgcn_view_and_mgcn_fusion_inside_camgr_are_mgcns(data_graph):
    """With ``ui_view=lightgcn`` and ``fusion=attention`` CAmgr's ``H_n`` and fuser are MGCN's on the same
    parameters, whatever its other readings (here CAmgr's: U_i in the purifier, D^-1 S, mean users)."""
    data, graph = data_graph
    camgr = make("camgr", data_graph, ui_view="lightgcn", fusion="attention")
    mgcn = make("mgcn", data_graph)
    mgcn.load_state_dict({k: v for k, v in camgr.state_dict().items() if k in mgcn.state_dict()}, strict=False)
    for a, b in zip(camgr.ui_view(graph), mgcn.ui_view(graph), strict=True):
        torch.testing.assert_close(a, b)
    tokens = camgr.modality_tokens(graph)
    h_n = torch.cat(camgr.ui_view(graph))
    torch.testing.assert_close(camgr.fuse(tokens, h_n), mgcn.fuse(tokens, h_n))
    r = dense_interaction(data)
    ids = camgr.item_emb.weight + (r.T @ camgr.user_emb.weight) / r.sum(0).clamp_min(1)[:, None]   # eqs. 2-4
    torch.testing.assert_close(camgr.purifier_ids(graph), ids)


def test_each_change_makes_the_other_blocks_options_inactive():
    def inactive(**options):
        return set(inactive_options({"model": make_config(REGISTRY["camgr"], options)}))

    assert {"model.fusion_softmax", "model.fusion_mean"} <= inactive()
    assert {"model.gat_activation", "model.gat_transform", "model.gat_self_loops"} <= inactive(ui_view="lightgcn")
    off = inactive(fusion="attention")
    assert {"model.attention_axis", "model.mlp_hidden", "model.query_modality", "model.token_set"} <= off
    assert "model.fusion_softmax" not in off
    assert {"model.fusion", "model.attention_axis", "model.fusion_softmax"} <= inactive(variant="w/o CAFF")
    assert "model.id_guide" in inactive(variant="w/o IUID")
