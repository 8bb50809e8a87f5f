"""The dataset heterograph: schema, reverse relations, no leakage, message passing, cache, add_edge_type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dgl
import dgl.function as fn
import numpy as np
import pytest
import torch

import dglmm.graph.build as build_mod
from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.graph import (
    INTERACT_ETYPE,
    INTERACTED_BY_ETYPE,
    GraphConfig,
    add_edge_type,
    build_graph,
    graph_meta,
    graph_summary,
    kg_relation_etypes,
    similar_etype,
)

N_USERS, N_ITEMS, N_ENTITIES = 6, 8, 4


def make_dataset(with_kg: bool = True, with_modalities: bool = True) -> Dataset:
    rng = np.random.default_rng(0)
    pairs = np.array([(u, i) for u in range(N_USERS) for i in range(N_ITEMS) if (u + i) % 3 == 0])
    pairs = pairs[rng.permutation(len(pairs))]
    valid, test, train = pairs[:4], pairs[4:8], pairs[8:]
    ds = Dataset(name="tiny", n_users=N_USERS, n_items=N_ITEMS, train=train, valid=valid, test=test)
    if with_modalities:
        ds.modalities = {"image": rng.normal(size=(N_ITEMS, 5)).astype(np.float32),
                         "text": rng.normal(size=(N_ITEMS, 3)).astype(np.float32)}
    if with_kg:
        # KG ids: items 0..7, entities 8..11; relation 0 item->entity and entity->entity, 1 item->item,
        # 2 entity->item
        ds.kg = np.array([[0, 0, 8], [1, 0, 9], [2, 0, 8], [8, 0, 10], [9, 0, 11],
                          [3, 1, 4], [4, 1, 5], [10, 2, 6], [11, 2, 7], [8, 2, 0]], dtype=np.int64)
        ds.n_entities = N_ENTITIES
        ds.relation_names = ["has_genre", "similar_to", "features"]
    ds.validate()
    return ds


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="module")
def graph(dataset: Dataset) -> dgl.DGLGraph:
    return build_graph(dataset, GraphConfig(knn_k=3), cache_dir=False)


def pairs_of(g: dgl.DGLGraph, etype: tuple[str, str, str]) -> set[tuple[int, int]]:
    src, dst = g.edges(etype=etype)
    return set(zip(src.tolist(), dst.tolist(), strict=True))


def assert_graphs_equal(a: dgl.DGLGraph, b: dgl.DGLGraph) -> None:
    assert a.ntypes == b.ntypes and a.canonical_etypes == b.canonical_etypes
    for nt in a.ntypes:
        assert a.num_nodes(nt) == b.num_nodes(nt)
        assert a.nodes[nt].data.keys() == b.nodes[nt].data.keys()
        for k in a.nodes[nt].data.keys():
            assert torch.equal(a.nodes[nt].data[k], b.nodes[nt].data[k])
    for et in a.canonical_etypes:
        for x, y in zip(a.edges(etype=et), b.edges(etype=et), strict=True):
            assert torch.equal(x, y)
        assert a.edges[et].data.keys() == b.edges[et].data.keys()
        for k in a.edges[et].data.keys():
            assert torch.equal(a.edges[et].data[k], b.edges[et].data[k])


def test_schema(graph: dgl.DGLGraph, dataset: Dataset) -> None:
    assert set(graph.ntypes) == {"user", "item", "entity"}
    assert graph.num_nodes("user") == N_USERS and graph.num_nodes("item") == N_ITEMS
    assert graph.num_nodes("entity") == N_ENTITIES
    expected = {INTERACT_ETYPE, INTERACTED_BY_ETYPE, similar_etype("image"), similar_etype("text"),
                ("item", "has_genre", "entity"), ("entity", "rev_has_genre", "item"),
                ("entity", "has_genre", "entity"), ("entity", "rev_has_genre", "entity"),
                ("item", "similar_to", "item"), ("item", "rev_similar_to", "item"),
                ("entity", "features", "item"), ("item", "rev_features", "entity")}
    assert set(graph.canonical_etypes) == expected
    for m, feat in dataset.modalities.items():
        assert graph.nodes["item"].data[f"feat_{m}"].dtype == torch.float32
        np.testing.assert_array_equal(graph.nodes["item"].data[f"feat_{m}"].numpy(), feat)
        assert graph.num_edges(similar_etype(m)) == N_ITEMS * 3
        assert set(graph.edges[similar_etype(m)].data.keys()) == {"sim", "w"}


def test_interactions_are_train_only_and_reversed(graph: dgl.DGLGraph, dataset: Dataset) -> None:
    fwd = pairs_of(graph, INTERACT_ETYPE)
    assert fwd == {tuple(p) for p in dataset.train.tolist()}
    assert not fwd & {tuple(p) for p in np.concatenate([dataset.valid, dataset.test]).tolist()}
    u, i = graph.edges(etype=INTERACT_ETYPE)
    i2, u2 = graph.edges(etype=INTERACTED_BY_ETYPE)
    assert torch.equal(u, u2) and torch.equal(i, i2)
    deg_u = torch.bincount(u, minlength=N_USERS).double()
    deg_i = torch.bincount(i, minlength=N_ITEMS).double()
    expected = (1 / (deg_u[u] * deg_i[i]).sqrt()).float()
    torch.testing.assert_close(graph.edges[INTERACT_ETYPE].data["w"], expected)
    torch.testing.assert_close(graph.edges[INTERACTED_BY_ETYPE].data["w"], expected)


def test_interaction_norm_none(dataset: Dataset) -> None:
    g = build_graph(dataset, GraphConfig(interaction_norm="none"), cache_dir=False)
    assert bool((g.edges[INTERACT_ETYPE].data["w"] == 1).all())


def test_kg_relations_and_reverses(graph: dgl.DGLGraph, dataset: Dataset) -> None:
    rel_etypes = kg_relation_etypes(graph)
    assert set(rel_etypes) == {0, 1, 2}
    assert len(rel_etypes[0]) == 4 and len(kg_relation_etypes(graph, include_reverse=False)[0]) == 2
    offset = {"item": 0, "entity": N_ITEMS}
    triples = set()
    for rel, etypes in rel_etypes.items():
        for et in etypes:
            data = graph.edges[et].data
            assert bool((data["rel"] == rel).all()) and data["rel"].dtype == torch.int64
            reverse = et[1].startswith("rev_")
            assert data["reversed"].dtype == torch.bool and bool((data["reversed"] == reverse).all())
            if reverse:
                forward = (et[2], et[1][4:], et[0])
                assert pairs_of(graph, et) == {(d, s) for s, d in pairs_of(graph, forward)}
                assert bool((graph.edges[forward].data["rel"] == rel).all())
            else:
                assert et[1] == dataset.relation_names[rel]
                triples |= {(s + offset[et[0]], rel, d + offset[et[2]]) for s, d in pairs_of(graph, et)}
    assert triples == {tuple(t) for t in dataset.kg.tolist()}


def test_similarity_message_passing_equals_dense(graph: dgl.DGLGraph) -> None:
    h = torch.randn(N_ITEMS, 4, generator=torch.Generator().manual_seed(0))
    for m in ("image", "text"):
        et = similar_etype(m)
        src, dst = graph.edges(etype=et)
        dense = torch.zeros(N_ITEMS, N_ITEMS)
        dense[dst, src] = graph.edges[et].data["w"]
        with graph.local_scope():
            graph.nodes["item"].data["h"] = h
            graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "out"), etype=et)
            torch.testing.assert_close(graph.nodes["item"].data["out"], dense @ h)
        assert bool((graph.edges[et].data["sim"] >= 0).all())


def test_empty_kg_and_no_modalities(tmp_path: Path) -> None:
    ds = make_dataset(with_kg=False, with_modalities=False)
    g = build_graph(ds, cache_dir=tmp_path)
    assert_graphs_equal(g, build_graph(ds, cache_dir=tmp_path))
    assert g.num_nodes("entity") == 0 and "entity" in g.ntypes
    assert set(g.canonical_etypes) == {INTERACT_ETYPE, INTERACTED_BY_ETYPE}
    assert kg_relation_etypes(g) == {}
    assert "entity" in graph_summary(g)


def test_config_switches(dataset: Dataset) -> None:
    g = build_graph(dataset, GraphConfig(modalities=["text"], include_kg=False, store_features=False),
                    cache_dir=False)
    assert set(g.canonical_etypes) == {INTERACT_ETYPE, INTERACTED_BY_ETYPE, similar_etype("text")}
    assert len(g.nodes["item"].data.keys()) == 0
    g = build_graph(dataset, GraphConfig(kg_reverse=False, modalities=[]), cache_dir=False)
    assert not any(et[1].startswith("rev_") for et in g.canonical_etypes)
    with pytest.raises(DataError, match="audio"):
        build_graph(dataset, GraphConfig(modalities=["audio"]), cache_dir=False)
    with pytest.raises(ValueError, match="graph.knn_norm must be one of sym, rw, none; got 'bogus'"):
        build_graph(dataset, GraphConfig(knn_norm="bogus"), cache_dir=False)


def test_clashing_relation_names_are_reported(dataset: Dataset) -> None:
    ds = dataclasses.replace(dataset, relation_names=["has_genre", "similar_image", "features"])
    with pytest.raises(DataError, match="defined twice"):
        build_graph(ds, cache_dir=False)


def test_deterministic_and_summary(graph: dgl.DGLGraph, dataset: Dataset) -> None:
    assert_graphs_equal(graph, build_graph(dataset, GraphConfig(knn_k=3), cache_dir=False))
    text = graph_summary(graph)
    assert "(user, interact, item)" in text and "knn_k=3" in text
    assert f"{len(dataset.train):,}" in text
    assert graph_meta(graph)["modalities"] == ["image", "text"]


def count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = build_mod._build

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "_build", counting)
    return calls


def test_cache_hit_and_invalidation(dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_builds(monkeypatch)
    first = build_graph(dataset, GraphConfig(knn_k=3), cache_dir=tmp_path)
    files = list(tmp_path.glob("*.bin"))
    assert len(files) == 1 and files[0].stem == graph_meta(first)["cache_key"]
    second = build_graph(dataset, GraphConfig(knn_k=3), cache_dir=tmp_path)
    assert len(calls) == 1
    assert_graphs_equal(first, second)
    assert graph_meta(second)["config"] == dataclasses.asdict(GraphConfig(knn_k=3))

    changed = dataclasses.replace(dataset, modalities=dict(dataset.modalities))
    changed.modalities["image"] = changed.modalities["image"].copy()
    changed.modalities["image"][5, 0] += 1.0
    build_graph(changed, GraphConfig(knn_k=3), cache_dir=tmp_path)
    build_graph(dataset, GraphConfig(knn_k=4), cache_dir=tmp_path)
    assert len(calls) == 3 and len(list(tmp_path.glob("*.bin"))) == 3
    assert not list(tmp_path.glob("*.tmp*"))


def test_cache_disabled_env_default_and_corrupt_file(dataset: Dataset, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGLMM_CACHE", str(tmp_path / "env"))
    calls = count_builds(monkeypatch)
    build_graph(dataset, cache_dir=False)
    assert not (tmp_path / "env").exists()
    g = build_graph(dataset)
    (path,) = (tmp_path / "env").glob("*.bin")
    path.write_bytes(b"garbage")
    assert_graphs_equal(g, build_graph(dataset))
    assert len(calls) == 3


def test_add_edge_type_adds_and_replaces(graph: dgl.DGLGraph) -> None:
    graph = graph.clone()
    graph.nodes["user"].data["emb"] = torch.randn(N_USERS, 2)
    et = ("item", "correlate", "item")
    src, dst = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    g2 = add_edge_type(graph, et, src, dst, {"w": torch.tensor([0.1, 0.2, 0.3])})
    assert set(g2.canonical_etypes) == set(graph.canonical_etypes) | {et}
    assert pairs_of(g2, et) == {(0, 1), (1, 2), (2, 3)}
    torch.testing.assert_close(g2.edges[et].data["w"], torch.tensor([0.1, 0.2, 0.3]))
    for nt in graph.ntypes:
        assert g2.nodes[nt].data.keys() == graph.nodes[nt].data.keys()
        for k, v in graph.nodes[nt].data.items():
            assert torch.equal(g2.nodes[nt].data[k], v)
    for c in graph.canonical_etypes:
        assert torch.equal(torch.stack(g2.edges(etype=c)), torch.stack(graph.edges(etype=c)))
        for k, v in graph.edges[c].data.items():
            assert torch.equal(g2.edges[c].data[k], v)
    assert et not in graph.canonical_etypes  # the input graph is untouched
    assert graph_meta(g2) == graph_meta(graph)

    g3 = add_edge_type(g2, et, torch.tensor([4]), torch.tensor([5]))
    assert pairs_of(g3, et) == {(4, 5)} and len(g3.edges[et].data.keys()) == 0
    assert set(g3.canonical_etypes) == set(g2.canonical_etypes)
    assert_graphs_equal(g3.edge_type_subgraph([INTERACT_ETYPE]), graph.edge_type_subgraph([INTERACT_ETYPE]))
