"""Derived graphs follow the model's device through one call, Recommender.bind_graphs, which the trainer makes
after moving the model and after every epoch hook."""

from __future__ import annotations

import torch

from dglmm.nn.added_relation import AddedRelation
from dglmm.nn.graph_state import GraphState
from dglmm.nn.item_graph import ItemGraph
from tests.helpers import build_model, tiny_dataset


def test_every_graph_holder_of_a_model_is_bound(monkeypatch):
    calls = []
    monkeypatch.setattr(ItemGraph, "bind", lambda self, device: calls.append(("learned", device)))
    _, _, micro = build_model("micro", embedding_dim=8)
    micro.bind_graphs("cpu")
    assert calls == [("learned", torch.device("cpu"))] * len(micro.learned)
    data = tiny_dataset(modalities={"image": 4, "text": 3})
    _, _, camgr = build_model("camgr", data, embedding_dim=4, mlp_hidden=4)
    calls.clear()
    camgr.bind_graphs("cpu")
    assert calls == [("learned", torch.device("cpu"))] and len(camgr.semantic.relations) == 2  # one per modality


def test_holders_move_their_tensors_and_drop_stale_caches():
    relation = AddedRelation(("item", "correlate", "item"))
    assert isinstance(relation, GraphState)
    relation.set(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))
    relation._cache = ("stale", None)
    relation.bind(torch.device("cpu"))          # already there: nothing moves, the cache stays
    assert relation._cache == ("stale", None)
    learned = ItemGraph(3, 1)
    learned.rebuild([torch.eye(3)])
    weight = learned.weight
    learned.bind(torch.device("cpu"))
    assert learned.weight is weight


def test_the_trainer_binds_after_moving_the_model_and_after_each_epoch_hook(monkeypatch, tmp_path):
    from dglmm.config import TrainConfig
    from dglmm.models.base import Recommender
    from dglmm.train.trainer import Trainer

    data, graph, model = build_model("lattice", embedding_dim=8)
    order = []
    for hook in ("on_epoch_start", "on_epoch_end"):
        original = getattr(type(model), hook)
        monkeypatch.setattr(type(model), hook, lambda self, e, g, o=original, h=hook: (order.append(h), o(self, e, g)))
    monkeypatch.setattr(Recommender, "bind_graphs", lambda self, device: order.append("bind"))
    trainer = Trainer(model, graph, data, TrainConfig(epochs=1, progress=False, batch_size=64), None)
    assert order == ["bind"]
    trainer.train_epoch(0)
    assert order == ["bind", "on_epoch_start", "bind", "on_epoch_end", "bind"]
