"""Baselines against dense references written independently of the implementation."""

import pytest
import torch
import torch.nn.functional as F

from dglmm.models import REGISTRY, make_config
from tests.helpers import dense_adjacency, manual_graph, tiny_dataset, train_terms


def build(name, data, **options):
    g = manual_graph(data)
    cls = REGISTRY[name]
    return cls(data, g, make_config(cls, options)), g


@pytest.mark.parametrize("backend", ["dgl", "csr"])
def test_lightgcn_equals_dense_layer_mean(backend):
    data = tiny_dataset()
    model, g = build("lightgcn", data, n_layers=3, backend=backend, embedding_dim=8)
    adj, n_u = dense_adjacency(data), data.n_users
    e = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    layers = [e]
    for _ in range(3):
        layers.append(adj @ layers[-1])
    ref = torch.stack(layers).mean(0)
    reps = model(g)
    torch.testing.assert_close(reps.user.detach(), ref[:n_u])
    torch.testing.assert_close(reps.item.detach(), ref[n_u:])


@pytest.mark.parametrize("bias_init", ["zero", "xavier"])
def test_ngcf_equals_dense_formula(bias_init):
    data = tiny_dataset(seed=1)
    model, g = build("ngcf", data, n_layers=2, embedding_dim=6, message_dropout=0.0, bias_init=bias_init)
    model.eval()
    lap, n_u = dense_adjacency(data), data.n_users
    e = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    outs = [e]
    for layer in model.layers:  # E' = LeakyReLU((L + I) E W1 + (L E) * E W2), NGCF eq. 7
        w1, b1, w2, b2 = (p.detach() for p in (layer.w1.weight, layer.w1.bias, layer.w2.weight, layer.w2.bias))
        e = F.leaky_relu(((lap + torch.eye(len(e))) @ e) @ w1.T + b1 + ((lap @ e) * e) @ w2.T + b2, 0.2)
        outs.append(F.normalize(e, dim=1))
    ref = torch.cat(outs, 1)
    reps = model(g)
    torch.testing.assert_close(reps.user.detach(), ref[:n_u])
    torch.testing.assert_close(reps.item.detach(), ref[n_u:])


@pytest.mark.parametrize("bias_init", ["zero", "xavier"])
def test_ngcf_biases_start_as_configured(bias_init):
    """``xavier``: the official code's ``b_gc``/``b_bi``, Xavier over ``[1, d]`` (bound sqrt(6 / (1 + d)))."""
    torch.manual_seed(0)
    model, _ = build("ngcf", tiny_dataset(), n_layers=2, embedding_dim=16, bias_init=bias_init)
    biases = torch.stack([lin.bias.detach() for layer in model.layers for lin in (layer.w1, layer.w2)])
    if bias_init == "zero":
        assert not biases.any()
    else:
        bound = (6 / (1 + 16)) ** 0.5
        assert biases.abs().max() <= bound and biases.abs().max() > bound / 2 and biases.std() > bound / 4


def test_vbpr_score_matches_paper_formula():
    data = tiny_dataset(modalities={"image": 5, "text": 3})
    model, g = build("vbpr", data, embedding_dim=4)
    with torch.no_grad():
        model.item_bias.normal_()
        model.content_bias.normal_()
    f = torch.cat([torch.as_tensor(data.modalities["image"]), torch.as_tensor(data.modalities["text"])], 1)
    gu, tu, gi = model.gamma_user.weight, model.theta_user.weight, model.gamma_item.weight
    ref = model.item_bias + gu @ gi.T + tu @ (f @ model.embed.weight.T).T + f @ model.content_bias
    users = torch.arange(data.n_users)
    torch.testing.assert_close(model.score(model(g), users), ref)


@pytest.mark.parametrize("content_reg", [False, True])
def test_vbpr_l2_by_hand(content_reg):
    """L2 = (||gamma_u||^2 + ||theta_u||^2 + ||gamma_i||^2 + ||gamma_j||^2 + beta_i^2 + beta_j^2 [+ ||E f_i||^2
    + ||E f_j||^2 with ``content_reg``]) / (2 B), E and beta' otherwise unregularised (the VBPR authors)."""
    data = tiny_dataset(modalities={"image": 5, "text": 3})
    model, g = build("vbpr", data, embedding_dim=4, reg_weight=0.5, content_reg=content_reg)
    with torch.no_grad():
        model.item_bias.normal_()
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1])
    f = torch.cat([torch.as_tensor(data.modalities["image"]), torch.as_tensor(data.modalities["text"])], 1)
    parts = [model.gamma_user.weight[users], model.theta_user.weight[users], model.gamma_item.weight[pos],
             model.gamma_item.weight[neg], model.item_bias[pos], model.item_bias[neg]]
    if content_reg:
        parts += [f[pos] @ model.embed.weight.T, f[neg] @ model.embed.weight.T]
    expected = 0.5 * sum(float((p ** 2).sum()) for p in parts) / (2 * 3)
    assert float(train_terms(model, g, users, pos, neg)["l2"]) == pytest.approx(expected, rel=1e-5)


def test_vbpr_gradcheck():
    """Autograd gradients of the whole VBPR loss equal finite differences (double precision)."""
    data = tiny_dataset(n_users=5, n_items=4, n=12, modalities={"image": 3})
    model, g = build("vbpr", data, embedding_dim=2)
    model.double()
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1])
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def loss(*values):
        for name, value in zip(names, values, strict=True):  # swap the parameters for gradcheck's inputs
            module, attr = model, name
            while "." in attr:
                head, attr = attr.split(".", 1)
                module = getattr(module, head)
            module._parameters[attr] = value
        return sum(train_terms(model, g, users, pos, neg).values())

    assert torch.autograd.gradcheck(loss, params)


@pytest.mark.parametrize("name", ["mf", "lightgcn", "ngcf", "vbpr"])
def test_loss_terms_are_named_and_finite(name):
    data = tiny_dataset(modalities={"image": 4})
    model, g = build(name, data)
    terms = train_terms(model, g, torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    assert "bpr" in terms and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", sorted(n for n, cls in REGISTRY.items() if cls.uses_every_parameter))
def test_a_model_that_says_it_uses_every_parameter_does(name):
    """``uses_every_parameter`` lets DDP skip its unused-parameter search; a wrong claim would fail under DDP."""
    data = tiny_dataset(modalities={"image": 4})
    model, g = build(name, data)
    model.train()
    sum(train_terms(model, g, torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])).values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused
    assert {"mf", "lightgcn", "ngcf", "vbpr"} <= {n for n, cls in REGISTRY.items() if cls.uses_every_parameter}
