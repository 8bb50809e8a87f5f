"""KGAT against hand-written equations (TransR, attention, aggregators, propagation) and its training schedule."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from dglmm.cli import main
from dglmm.config import TrainConfig
from dglmm.data.sampler import KGTripleSampler
from dglmm.data.synthetic import make_synthetic
from dglmm.errors import InputError
from dglmm.io import read_run_config
from dglmm.models import REGISTRY, Batch
from dglmm.train.evaluate import evaluate_popularity
from dglmm.train.run import evaluate_run, prepare_run, resolve_model_config, run_once
from tests.helpers import build_model, train_terms


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=40, n_items=50, interactions_per_user=6, n_kg_attributes=8, seed=3)


def build(data, **options):
    torch.manual_seed(0)
    _, graph, model = build_model("kgat", data, **{"embedding_dim": 6, "layer_sizes": [5, 4], "relation_dim": 3,
                                                  "message_dropout": 0.0, **options})
    return graph, model


def dense_attention(model):
    """pi(h, r, t) = softmax over each head's triples of (W_r e_t)^T tanh(W_r e_h + e_r), by a loop (eqs. 4-5)."""
    e, w, er = model.embedding.weight, model.relation_attention.transform, model.relation_attention.relation_emb
    n = model.n_nodes
    logits = torch.full((n, n), float("-inf"))
    for t, h, r in zip(model.edge_src.tolist(), model.edge_dst.tolist(), model.edge_rel.tolist(), strict=True):
        value = (e[t] @ w[r]) @ torch.tanh(e[h] @ w[r] + er[r])
        assert logits[h, t] == float("-inf")      # (h, t) pairs are unique in the synthetic CKG
        logits[h, t] = value
    return torch.nan_to_num(torch.softmax(logits, 1), nan=0.0)


@torch.no_grad()
@pytest.mark.parametrize("aggregator, layer_norm", [("bi", "l2"), ("gcn", "l2"), ("graphsage", "l2"), ("bi", "none")])
def test_forward_equals_dense_eqs_3_to_11(small, aggregator, layer_norm):
    graph, model = build(small, attention="batch", aggregator=aggregator, layer_norm=layer_norm)
    model.eval()
    a = dense_attention(model)
    ego = model.embedding.weight
    layers = [ego]
    for agg in model.aggregators:
        side = a @ ego                                                                  # eq. 3
        if aggregator == "bi":
            ego = F.leaky_relu(agg.w1(ego + side), 0.2) + F.leaky_relu(agg.w2(ego * side), 0.2)   # eq. 8
        elif aggregator == "gcn":
            ego = F.leaky_relu(agg.w1(ego + side), 0.2)                                 # eq. 6
        else:
            ego = F.leaky_relu(agg.w1(torch.cat([ego, side], 1)), 0.2)                   # eq. 7
        layers.append(F.normalize(ego, dim=1) if layer_norm == "l2" else ego)        # official code / eq. 11
    out = torch.cat(layers, 1)                                                          # eq. 11
    reps = model(graph)
    torch.testing.assert_close(reps.item, out[:small.n_items], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.user, out[model.user_offset:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("embedding_init", ["per_table", "one_table"])
def test_layer_0_init_uses_the_official_per_table_xavier_bounds(small, embedding_init):
    _, model = build(small, embedding_init=embedding_init)
    weight, d, offset = model.embedding.weight.detach(), 6, model.user_offset
    n_users, n_entities = model.n_nodes - offset, offset
    bound = {"users": (6 / (n_users + d)) ** 0.5, "entities": (6 / (n_entities + d)) ** 0.5,
             "all": (6 / (model.n_nodes + d)) ** 0.5}
    users, entities = weight[offset:].abs().max().item(), weight[:offset].abs().max().item()
    if embedding_init == "per_table":           # official user_embed and entity_embed, each with its own bound
        assert bound["entities"] < users <= bound["users"]
        assert entities <= bound["entities"] and entities > 0.9 * bound["entities"]
    else:
        assert max(users, entities) <= bound["all"]


@pytest.mark.parametrize("bias_init", ["xavier", "zero"])
def test_aggregator_biases_follow_the_official_xavier_init(small, bias_init):
    _, model = build(small, bias_init=bias_init)     # layer sizes 6 -> 5 -> 4
    for aggregator, d_out in zip(model.aggregators, [5, 4], strict=True):
        for lin in (aggregator.w1, aggregator.w2):
            bias = lin.bias.detach()
            if bias_init == "zero":
                assert not bias.any()
            else:                                    # TF xavier_initializer on a [1, d_out] variable
                assert bias.abs().max() <= (6 / (1 + d_out)) ** 0.5 and bias.abs().max() > 0.1
            assert lin.weight.abs().max() <= (6 / (lin.in_features + d_out)) ** 0.5


def test_transr_loss_equals_formula(small):
    _, model = build(small)
    h, r, t, tn = torch.tensor([0, 3]), torch.tensor([1, 0]), torch.tensor([5, 7]), torch.tensor([9, 2])
    terms = model.transr_loss(h, r, t, tn)
    e, w, er = model.embedding.weight, model.relation_attention.transform, model.relation_attention.relation_emb
    g = lambda a, b, c: ((e[a] @ w[b]) + er[b] - (e[c] @ w[b])).pow(2).sum()  # noqa: E731  eq. 1
    expected = sum(F.softplus(g(h[k], r[k], t[k]) - g(h[k], r[k], tn[k])) for k in range(2)) / 2   # eq. 2
    torch.testing.assert_close(terms["transr"], expected)
    proj = [torch.stack([e[x[k]] @ w[r[k]] for k in range(2)]) for x in (h, t, tn)]
    l2 = (proj[0].pow(2).sum() + er[r].pow(2).sum() + proj[1].pow(2).sum() + proj[2].pow(2).sum()) / 4
    torch.testing.assert_close(terms["kg_l2"], model.config.kg_reg_weight * l2)


def test_initial_weights_are_per_relation_means_and_epoch_update_is_attention(small):
    graph, model = build(small)
    dst, rel = model.edge_dst, model.edge_rel
    for k in [0, 5, 17]:
        same = ((dst == dst[k]) & (rel == rel[k])).sum()
        assert model.attention_weights[k] == pytest.approx(1.0 / float(same))
    model.on_epoch_end(0, graph)                       # the official update after an epoch: eqs. 4-5, no grad
    a = dense_attention(model)
    torch.testing.assert_close(model.attention_weights, a[model.edge_dst, model.edge_src].detach())
    assert not model.attention_weights.requires_grad
    assert "attention_weights" in model.state_dict()  # saved with checkpoints and best.pt


def test_kg_sampler_draws_existing_triples_and_unseen_corruptions():
    rng = np.random.default_rng(0)
    heads, rels, tails = rng.integers(0, 30, 200), rng.integers(0, 4, 200), rng.integers(0, 30, 200)
    sampler = KGTripleSampler(heads, rels, tails, 30, batch_size=500, n_batches=3, seed=1)
    triples = set(zip(heads.tolist(), rels.tolist(), tails.tolist(), strict=True))
    batches = list(sampler)
    assert len(batches) == 3
    for h, r, t, tn in batches:
        got = list(zip(h.tolist(), r.tolist(), t.tolist(), strict=True))
        assert all(x in triples for x in got)
        assert not any((a, b, c) in triples for a, b, c in zip(h.tolist(), r.tolist(), tn.tolist(), strict=True))
    state = sampler.state_dict()
    first = sampler.sample()
    sampler.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, sampler.sample(), strict=True))


@pytest.mark.parametrize("options", [{}, {"attention": "batch"}, {"attention": "none"}, {"kg_loss": False},
                                     {"kg_schedule": "joint"}, {"aggregator": "gcn"}, {"aggregator": "graphsage"},
                                     {"layer_norm": "none"}, {"embedding_init": "one_table"}, {"bias_init": "zero"}, {"kg_batch_size": 0},
                                     {"kg_optimizer": "shared"}])
def test_every_option_trains_a_step(small, options):
    graph, model = build(small, **options)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    terms = train_terms(model, graph, [0, 1], [2, 3], [4, 5])
    assert set(terms) == {"bpr", "l2"}
    kg = Batch(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
               {"kg": (torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([5, 6]))})
    assert model.training_forward(graph, kg) is None    # the TransR phase needs no propagation
    terms.update(model.loss(None, kg))
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    assert model.relation_attention.transform.grad is not None


@pytest.mark.parametrize("kg_optimizer, kg_batch_size", [("separate", 2048), ("separate", 7), ("shared", 0)])
def test_alternation_runs_a_kg_phase_after_the_cf_batches(small, kg_optimizer, kg_batch_size, tmp_path):
    options = ["train.epochs=1", "train.batch_size=64", "train.progress=false", f"model.kg_optimizer={kg_optimizer}",
               f"model.kg_batch_size={kg_batch_size}"]
    prepared = prepare_run("kgat", small, resolve_model_config("kgat", "small", [], options))
    trainer, steps = prepared.trainer, []
    original = trainer._step

    def record(batch, epoch, sums, counts, optimizer=None):
        steps.append(("cf" if len(batch.users) else "kg", optimizer or trainer.optimizer))
        original(batch, epoch, sums, counts, optimizer)

    trainer._step = record
    losses = trainer.train_epoch(0)
    n_cf, n_triples = -(-len(small.train) // 64), len(prepared.model.edge_src)
    # n_triples // kg_batch_size + 1 batches of kg_batch_size (the PyTorch port); 0: one per CF batch
    n_kg = n_triples // kg_batch_size + 1 if kg_batch_size else n_cf
    assert [kind for kind, _ in steps] == ["cf"] * n_cf + ["kg"] * n_kg
    kg_sampler = trainer.extra_samplers["kg"]
    assert kg_sampler.batch_size == (kg_batch_size or n_triples // n_cf)
    assert {"bpr", "transr", "kg_l2"} <= set(losses)
    # official: opt for L_CF and opt2 for L_KG, two Adam states; 'shared': one Adam steps both losses
    kg_optimizer_used = trainer.phase_optimizers["kg"] if kg_optimizer == "separate" else trainer.optimizer
    assert all(opt is trainer.optimizer for kind, opt in steps if kind == "cf")
    assert all(opt is kg_optimizer_used for kind, opt in steps if kind == "kg")
    embedding = prepared.model.embedding.weight
    main_steps = int(trainer.optimizer.state[embedding]["step"])
    assert main_steps == (n_cf if kg_optimizer == "separate" else n_cf + n_kg)
    if kg_optimizer == "separate":
        assert int(trainer.phase_optimizers["kg"].state[embedding]["step"]) == n_kg
        state = trainer._state(0)           # checkpointed, and restored on resume
        torch.save(state, tmp_path / "checkpoint.pt")
        again = prepare_run("kgat", small, resolve_model_config("kgat", "small", [], options)).trainer
        again.resume(tmp_path / "checkpoint.pt")
        restored = again.phase_optimizers["kg"].state[again.model.embedding.weight]
        assert int(restored["step"]) == n_kg
        torch.testing.assert_close(restored["exp_avg_sq"],
                                   trainer.phase_optimizers["kg"].state[embedding]["exp_avg_sq"], rtol=0, atol=0)
    else:
        assert trainer.phase_optimizers == {}


def test_kgat_learns_and_evaluate_reproduces_the_run(tmp_path, monkeypatch):
    data = make_synthetic(n_users=300, n_items=400, seed=4)
    config = resolve_model_config("kgat", "synthetic", [], ["train.epochs=25", "train.patience=5", "train.progress=false"])
    results = run_once("kgat", data, config, tmp_path / "run", graph_cache=False)
    popularity = evaluate_popularity(data)["recall@20"]
    assert results["test"]["recall@20"] > 1.2 * popularity
    monkeypatch.setattr("dglmm.data.readers.load_dataset", lambda spec: data)
    assert evaluate_run(tmp_path / "run") == results["test"]


def test_fixed_attention_fast_path_equals_message_passing(small):
    from dglmm.nn.attention import RelationAttention

    graph, model = build(small)
    model.on_epoch_end(0, graph)
    e = model.embedding.weight.detach()
    torch.testing.assert_close(model.neighbourhood()(e),
                               RelationAttention.aggregate(model.kg_graph(), e, model.attention_weights))
    cached = model._fixed
    model.neighbourhood()
    assert model._fixed is cached                         # unchanged weights: the CSR matrices are reused
    model.load_state_dict(model.state_dict())              # weights copied in place: a new key, rebuilt
    model.neighbourhood()
    assert model._fixed is not cached


# -- pretrain: user/item embeddings from a trained MF run (official --pretrain -1) ----------------------------

@pytest.fixture(scope="module")
def mf_run(small, tmp_path_factory):
    """A 2-epoch MF run folder on ``small`` with KGAT's test embedding size (6)."""
    run_dir = tmp_path_factory.mktemp("mf") / "seed0"
    config = resolve_model_config("mf", "synthetic", [], ["model.embedding_dim=6", "train.epochs=2",
                                                          "train.progress=false"])
    run_once("mf", small, config, run_dir, graph_cache=False)
    return run_dir


@pytest.mark.parametrize("target", ["folder", "printed folder", "best.pt"])
def test_pretrain_copies_the_mf_runs_user_and_item_embeddings(small, mf_run, target):
    mf_state = torch.load(mf_run / "best.pt", weights_only=True)["model"]
    _, plain = build(small)
    spec = {"folder": mf_run, "printed folder": mf_run.parent, "best.pt": mf_run / "best.pt"}[target]
    _, model = build(small, pretrain=str(spec))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name, value in before.items():              # building does not read the file: same draws as without
        torch.testing.assert_close(value, plain.state_dict()[name], rtol=0, atol=0)
    model.load_pretrained()
    weight = model.embedding.weight.detach()
    assert torch.equal(weight[:model.n_items], mf_state["item_emb.weight"])          # items: first entity rows
    assert torch.equal(weight[model.user_offset:], mf_state["user_emb.weight"])      # users: the last rows
    assert weight.shape[0] - model.user_offset == small.n_users
    assert torch.equal(weight[model.n_items:model.user_offset], before["embedding.weight"][small.n_items:model.user_offset])
    for name, value in model.state_dict().items():   # relations, TransR, aggregators: untouched
        if name != "embedding.weight":
            assert torch.equal(value, before[name]), name


def test_pretrain_from_an_mf_run_with_several_seeds_takes_the_same_seed(small, mf_run, tmp_path):
    runs = tmp_path / "mf"
    shutil.copytree(mf_run, runs / "seed0")
    config = resolve_model_config("mf", "synthetic", [], ["model.embedding_dim=6", "train.epochs=1",
                                                          "train.progress=false", "train.seed=7"])
    run_once("mf", small, config, runs / "seed1", graph_cache=False)
    recorded = [read_run_config(runs / f"seed{i}")["train"].get("seed", TrainConfig.seed) for i in (0, 1)]
    assert recorded[1] == 7 and recorded[0] != 7  # seed0 has the default seed (not written in its config.yaml)
    _, model = build(small, pretrain=str(runs))
    for seed, folder in ((7, "seed1"), (recorded[0], "seed0")):
        model.load_pretrained(seed)
        users = torch.load(runs / folder / "best.pt", weights_only=True)["model"]["user_emb.weight"]
        assert torch.equal(model.embedding.weight.detach()[model.user_offset:], users)
    for seed, fragment in ((8, "none trained with seed 8"), (None, "holds 2 seeds")):
        with pytest.raises(InputError) as error:
            model.load_pretrained(seed)
        assert str(error.value).startswith("model.pretrain: ") and fragment in str(error.value)


def test_pretrain_is_applied_once_and_never_over_a_resumed_checkpoint(small, mf_run, tmp_path, monkeypatch):
    mf_copy = Path(shutil.copytree(mf_run, tmp_path / "mf"))
    run_dir = tmp_path / "kgat"
    options = ["model.embedding_dim=6", "model.layer_sizes=[5, 4]", "model.relation_dim=3",
               f"model.pretrain={mf_copy}", "train.progress=false", "train.checkpoint_every=1"]
    calls = []
    original = REGISTRY["kgat"].load_pretrained
    monkeypatch.setattr(REGISTRY["kgat"], "load_pretrained",
                        lambda self, seed=None: (calls.append(1), original(self, seed)))
    run_once("kgat", small, resolve_model_config("kgat", "synthetic", [], [*options, "train.epochs=1"]), run_dir,
             graph_cache=False)
    assert calls == [1]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    shutil.rmtree(mf_copy)                            # resume and evaluate must not need the MF run any more
    prepared = prepare_run("kgat", small, resolve_model_config("kgat", "synthetic", [], options))
    prepared.trainer.resume(run_dir / "checkpoint.pt")
    torch.testing.assert_close(prepared.model.embedding.weight.detach(), checkpoint["model"]["embedding.weight"],
                               rtol=0, atol=0)
    results = run_once("kgat", small, resolve_model_config("kgat", "synthetic", [], [*options, "train.epochs=2"]),
                       run_dir, resume=True, graph_cache=False)
    assert calls == [1] and results["epochs_run"] == 2
    monkeypatch.setattr("dglmm.data.readers.load_dataset", lambda spec: small)
    assert evaluate_run(run_dir) == results["test"]


def _write(path: Path, obj) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return str(path)


BAD_PRETRAIN = {
    "missing file": (lambda d, mf: str(d / "absent"), "not found"),
    "folder without best.pt": (lambda d, mf: str(d), "not a run folder"),
    "embedding_dim": (lambda d, mf: _write(d / "x.pt", {"model": {"user_emb.weight": torch.zeros(40, 7),
                                                                   "item_emb.weight": torch.zeros(50, 7)}}),
                      "(40, 6)"),
    "n_users": (lambda d, mf: _write(d / "x.pt", {"model": {"user_emb.weight": torch.zeros(41, 6),
                                                             "item_emb.weight": torch.zeros(50, 6)}}), "(40, 6)"),
    "n_items": (lambda d, mf: _write(d / "x.pt", {"model": {"user_emb.weight": torch.zeros(40, 6),
                                                             "item_emb.weight": torch.zeros(49, 6)}}), "(50, 6)"),
    "not MF keys": (lambda d, mf: _write(d / "x.pt", {"model": {"embedding.weight": torch.zeros(90, 6)}}),
                    "not an MF checkpoint"),
    "no model state": (lambda d, mf: _write(d / "x.pt", {"best": {}}), "not an MF checkpoint"),
    "not a tensor": (lambda d, mf: _write(d / "x.pt", {"model": {"user_emb.weight": [1.0],
                                                                  "item_emb.weight": torch.zeros(50, 6)}}),
                     "not a float tensor"),
    "corrupt file": (lambda d, mf: (d / "x.pt").write_bytes(b"not a checkpoint") and str(d / "x.pt"),
                     "x.pt: "),
    "another model's run": (lambda d, mf: (shutil.copytree(mf, d / "run"), (d / "run" / "config.yaml").write_text(
        (d / "run" / "config.yaml").read_text().replace("model_name: mf", "model_name: lightgcn")),
        str(d / "run"))[-1], "'lightgcn' run"),
}


@pytest.mark.parametrize("case", list(BAD_PRETRAIN))
def test_bad_pretrain_is_one_input_error_naming_the_option(small, mf_run, tmp_path, case):
    make, fragment = BAD_PRETRAIN[case]
    _, model = build(small, pretrain=make(tmp_path, mf_run))
    with pytest.raises(InputError) as error:
        model.load_pretrained()
    message = str(error.value)
    assert message.startswith("model.pretrain: ") and fragment in message and "\n" not in message, message


def test_cli_pretrain_from_an_mf_run_and_a_bad_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DGLMM_CACHE", str(tmp_path / "cache"))
    quick = ["--set", "train.epochs=1", "--set", "train.progress=false"]
    assert main(["train", "-m", "mf", "-d", "synthetic", "--out", str(tmp_path / "mf"), *quick]) == 0
    mf_dir = next((tmp_path / "mf").glob("mf_synthetic_*")) / "seed0"
    assert main(["train", "-m", "kgat", "-d", "synthetic", "--out", str(tmp_path / "kgat"), *quick,
                 "--set", f"model.pretrain={mf_dir}"]) == 0
    kgat_dir = next((tmp_path / "kgat").glob("kgat_synthetic_*")) / "seed0"
    assert yaml.safe_load((kgat_dir / "config.yaml").read_text())["model"]["pretrain"] == str(mf_dir)
    capsys.readouterr()
    code = main(["train", "-m", "kgat", "-d", "synthetic", "--out", str(tmp_path / "bad"), *quick,
                 "--set", f"model.pretrain={tmp_path / 'nothing'}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("dglmm: error: model.pretrain: ") and "nothing" in lines[0], err
