"""CAmgr against dense references written from the paper's equations (Li et al., Mathematics'24)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dglmm.errors import InputError
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.models import REGISTRY, Batch, make_config
from tests.helpers import LargestTensor, build_model, dense_interaction, dense_knn, tiny_dataset

K = 4


def setup(**options):
    return build_model("camgr", graph_k=K, **{"knn_k": K, "embedding_dim": 8, "mlp_hidden": 6, "attention_chunk": 5,
                                            **options})


def dense_purified(data, model, modality):
    r = dense_interaction(data)
    u_bar = (r.T @ model.user_emb.weight) / r.sum(0).clamp_min(1)[:, None]     # eqs. 2-4
    x = torch.as_tensor(data.modalities[modality])
    aligned = x @ model.inputs.projections[modality].weight.T + model.inputs.projections[modality].bias   # eq. 1
    gate = torch.sigmoid(aligned @ model.gate[modality].weight.T + model.gate[modality].bias)
    return (model.item_emb.weight + u_bar) * gate                               # eqs. 5-6


@torch.no_grad()
def test_purification_equals_dense():
    data, graph, model = setup()
    purified = model.purified(graph)
    for m in ("image", "text"):
        torch.testing.assert_close(purified[m], dense_purified(data, model, m), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_without_iuid_uses_the_aligned_features():
    data, graph, model = setup(variant="w/o IUID")
    x = torch.as_tensor(data.modalities["image"])
    expected = x @ model.inputs.projections["image"].weight.T + model.inputs.projections["image"].bias
    torch.testing.assert_close(model.purified(graph)["image"], expected)


@pytest.mark.parametrize("self_loops", [False, True])
@torch.no_grad()
def test_gat_equals_hand_written_eqs_7_to_9(self_loops):
    data, graph, model = setup(n_layers=2, gat_self_loops=self_loops)
    enc = model.encoder
    n_u = data.n_users
    edges = {(int(u), int(i)) for u, i in data.train}
    neighbours = {n: [n] if self_loops else [] for n in range(n_u + data.n_items)}   # users first
    for u, i in edges:
        neighbours[u].append(n_u + i)
        neighbours[n_u + i].append(u)
    h = torch.cat([model.user_emb.weight, model.item_emb.weight])
    layers = [h]
    for layer in range(2):
        gat = enc.layers[layer]
        w, a_dst, a_src = gat.linear.weight, gat.attn_dst[:, 0], gat.attn_src[:, 0]
        wh = h @ w.T
        new = torch.zeros_like(h)
        for n, nbrs in neighbours.items():
            if not nbrs:
                continue
            omega = torch.cat([a_dst, a_src])
            logits = torch.stack([F.leaky_relu(omega @ torch.cat([wh[n], wh[i]]), 0.2) for i in nbrs])
            alpha = torch.softmax(logits, 0)                                             # eq. 8
            new[n] = F.relu(sum(a * wh[i] for a, i in zip(alpha, nbrs, strict=True)))  # eq. 7
        h = new
        layers.append(h)
    expected = torch.stack(layers).mean(0)                                               # eq. 9
    user, item = enc(graph, model.user_emb.weight, model.item_emb.weight)
    torch.testing.assert_close(torch.cat([user, item]), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", ["rw", "sym"])
@torch.no_grad()
def test_semantic_graphs_and_user_modality_representation_equal_dense(norm):
    data, graph, model = setup(knn_norm=norm)
    tokens = model.modality_tokens(graph)
    r = dense_interaction(data)
    for m in ("image", "text"):
        s = dense_knn(torch.as_tensor(data.modalities[m]), K, norm)
        item = s @ dense_purified(data, model, m)                                        # eq. 13
        user = (r @ item) / r.sum(1).clamp_min(1)[:, None]                               # eq. 14
        torch.testing.assert_close(tokens[m], torch.cat([user, item]), rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_semantic_graphs_from_purified_features():
    data, graph, model = setup(knn_source="purified")
    model.eval()
    tokens = model.modality_tokens(graph)
    purified = dense_purified(data, model, "text")
    item = dense_knn(purified, K, "rw") @ purified
    torch.testing.assert_close(tokens["text"][data.n_users:], item, rtol=1e-4, atol=1e-6)


def test_channel_attention_rejects_a_token_sample():
    with pytest.raises(InputError, match="model.token_set"):
        setup(attention_axis="channels", token_set="sampled")


@pytest.mark.parametrize("axis", ["nodes", "channels"])
def test_no_n_by_n_tensor_in_a_training_step_or_the_full_forward(axis):
    data, graph, model = setup(attention_chunk=4, attention_axis=axis)
    n = data.n_users + data.n_items
    users, pos, neg = torch.arange(20), torch.arange(18).repeat(2)[:20], torch.arange(20) % 18
    with LargestTensor() as probe:
        batch = Batch(users, pos, neg)
        sum(model.loss(model.training_forward(graph, batch), batch).values()).backward()
        model.eval()
        with torch.no_grad():
            model(graph)
    assert probe.largest < n * n, (probe.largest, n * n)
    if axis == "nodes":
        assert probe.shapes and all(rows <= 4 and cols == n for rows, cols in probe.shapes)  # chunk x N blocks
    else:
        assert probe.shapes == {(8, 8)}                                                     # d x d


def hand_info_nce(modal, ids, tau, critic):
    total = 0.0
    for a in range(len(modal)):  # eq. 30: positive (m_a, n_a); the denominator runs over all (m_a, n_r)
        num = torch.exp(critic(modal[a], ids[a]) / tau)
        den = sum(torch.exp(critic(modal[a], ids[r]) / tau) for r in range(len(modal)))
        total = total - torch.log(num / den)
    return total / len(modal)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_info_nce_equals_hand_written_eq_30(similarity):
    _, _, model = setup(cl_critic=similarity)
    torch.manual_seed(1)
    modal, ids = torch.randn(7, 4), torch.randn(7, 4)
    critic = (lambda x, y: F.cosine_similarity(x, y, dim=0)) if similarity == "cosine" else torch.dot
    torch.testing.assert_close(model.info_nce(modal, ids), hand_info_nce(modal, ids, 0.2, critic))


def test_loss_terms_equal_eqs_27_to_31():
    data, graph, model = setup(cl_weight=0.05, reg_weight=0.001)
    users, pos, neg = torch.tensor([0, 3, 3, 9]), torch.tensor([1, 2, 5, 2]), torch.tensor([4, 4, 7, 0])
    batch = Batch(users, pos, neg)
    terms = model.loss(model.training_forward(graph, batch), batch)
    model.eval()  # token_set="all": the batch forward and the full forward agree
    parts = model.encode(graph)
    u = parts["user_n"][users] + parts["user_m"][users]                                  # eq. 27
    i, j = (parts["item_n"][x] + parts["item_m"][x] for x in (pos, neg))
    torch.testing.assert_close(terms["bpr"], F.softplus((u * j).sum(1) - (u * i).sum(1)).mean())  # eq. 28
    torch.testing.assert_close(terms["l2"], 0.001 * sum(t.pow(2).sum() for t in (u, i, j)) / 8)
    cos = lambda x, y: F.cosine_similarity(x, y, dim=0)  # noqa: E731
    bu, bi = users.unique(), pos.unique()
    info = (hand_info_nce(parts["user_m"][bu], parts["user_n"][bu], 0.2, cos)
            + hand_info_nce(parts["item_m"][bi], parts["item_n"][bi], 0.2, cos))         # eq. 29
    torch.testing.assert_close(terms["info"], 0.05 * info, rtol=1e-4, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("axis", ["nodes", "channels"])
def test_fusion_equals_dense_eqs_15_to_26(axis):
    data, graph, model = setup(attention_axis=axis)
    model.eval()
    tokens = model.modality_tokens(graph)
    user_n, item_n = model.encoder(graph, model.user_emb.weight, model.item_emb.weight)
    h_n = torch.cat([user_n, item_n])
    ca = model.cross
    assert model.query_modality == "text" and model.kv_modalities == ["image"]
    q, k, v = ca.query(tokens["text"]), ca.key(tokens["image"]), ca.value(tokens["image"])  # eqs. 15-17
    if axis == "nodes":
        common = torch.softmax(q @ k.T / math.sqrt(8), 1) @ v                             # eqs. 18, 21: N x N
    else:
        common = (torch.softmax(q.T @ k / math.sqrt(8), 1) @ v.T).T                       # d x d, d x N layout

    def branch(block, x):
        r = block.linear(x) + q                                                           # eqs. 19, 22
        return block.mlp(block.norm(r)) + r                                               # eqs. 20, 23

    h_com, h_dif = branch(model.common_branch, common), branch(model.distinct_branch, v - common)
    g_com = torch.sigmoid(h_n @ model.gate_common.weight.T + model.gate_common.bias)      # eq. 24
    g_dif = torch.sigmoid(h_n @ model.gate_distinct.weight.T + model.gate_distinct.bias)  # eq. 25
    expected = 0.5 * (h_com * g_com + h_dif * g_dif)                                      # eq. 26
    reps = model(graph)
    torch.testing.assert_close(torch.cat([reps.user, reps.item]), h_n + expected, rtol=1e-4, atol=1e-5)


def test_tiktok_style_modalities_pick_audio_as_query():
    data = tiny_dataset(n_users=10, n_items=8, n=40, seed=2, modalities={"image": 4, "audio": 3})
    graph = build_graph(data, GraphConfig(knn_k=3), cache_dir=False)
    cls = REGISTRY["camgr"]
    model = cls(data, graph, make_config(cls, {"knn_k": 3}))
    assert model.query_modality == "audio" and model.kv_modalities == ["image"]
    model = cls(data, graph, make_config(cls, {"knn_k": 3, "query_modality": "image"}))
    assert model.kv_modalities == ["audio"]


VARIANT_OPTIONS = [
    {}, {"variant": "w/o IUID"}, {"variant": "w/o CAFF"}, {"modalities": ["image"]}, {"modalities": ["text"]},
    {"knn_k": 2}, {"cl_weight": 0.1}, {"attention_axis": "nodes"},
    {"attention_axis": "nodes", "token_set": "sampled", "n_key_tokens": 7}, {"attention_axis": "nodes", "token_set": "batch"},
    {"attention_axis": "nodes", "token_set": "sampled", "n_key_tokens": 9, "eval_token_set": "sampled"},
    {"attention_axis": "nodes", "token_set": "batch", "cl_items": "all"},
    {"knn_source": "purified"}, {"knn_norm": "sym"}, {"cl_items": "all"}, {"cl_critic": "dot"},
    {"l2_on": "ego"}, {"l2_on": "all"}, {"gat_activation": "none"}, {"trainable_features": True}, {"n_layers": 0},
    {"attention_axis": "nodes", "modalities": ["image"]},
]


@pytest.mark.parametrize("options", VARIANT_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
                         or "camgr")
def test_every_variant_trains_a_step(options):
    data, graph, model = setup(**options)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    model.train()
    model.on_batch_start(0)
    users, pos, neg = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8, 9, 1])
    batch = Batch(users, pos, neg)
    terms = model.loss(model.training_forward(graph, batch), batch)
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if torch.is_tensor(v))
    model.eval()
    with torch.no_grad():
        reps = model(graph)
    assert reps.user.shape == (data.n_users, 8) and torch.isfinite(reps.item).all()


def test_unknown_query_modality_is_rejected():
    with pytest.raises(ValueError, match="query_modality"):
        setup(query_modality="audio")
