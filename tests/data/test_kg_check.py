"""The KG link check (``dglmm data kg-check``): sampled pairs, the statistic against a hand computation, and the
permutation test on informative and on scrambled links."""

import dataclasses
import math

import numpy as np
import pytest

from dglmm.cli import main
from dglmm.data.dataset import Dataset
from dglmm.data.kg_check import _sharing_pairs, kg_alignment
from dglmm.data.synthetic import make_synthetic
from dglmm.errors import InputError


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic()


def scrambled(dataset: Dataset, seed: int = 1) -> Dataset:
    """The same KG with every item replaced by a random other one (wrong links)."""
    kg = dataset.kg.copy()
    perm = np.random.default_rng(seed).permutation(dataset.n_items)
    for column in (0, 2):
        items = kg[:, column] < dataset.n_items
        kg[items, column] = perm[kg[items, column]]
    return dataclasses.replace(dataset, kg=kg)


def test_sampled_pairs_share_a_tail_and_follow_the_pair_counts():
    # tail 10 links items 0, 1, 2 (pairs 01, 02, 12); tail 11 links items 1, 2 (pair 12 again): 12 has weight 2
    triples = np.array([[0, 0, 10], [1, 0, 10], [2, 0, 10], [1, 0, 11], [2, 0, 11], [3, 0, 12]])
    left, right = _sharing_pairs(triples, 40_000, np.random.default_rng(0))
    assert (left != right).all() and len(left) == 4   # at most the number of (pair, tail) combinations
    assert not np.isin(np.concatenate([left, right]), [3]).any()   # item 3 shares no tail
    counts = {}
    for seed in range(2000):
        left, right = _sharing_pairs(triples, 1, np.random.default_rng(seed))
        key = tuple(sorted((int(left[0]), int(right[0]))))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(0, 1), (0, 2), (1, 2)}
    assert abs(counts[(1, 2)] / 2000 - 0.5) < 0.04 and abs(counts[(0, 1)] / 2000 - 0.25) < 0.04


def test_statistic_is_the_mean_user_cosine_of_pairs_sharing_an_entity():
    # items 0 and 1 share entity 4 (id n_items + 0); users: item 0 <- {0, 1}, item 1 <- {1, 2, 3}
    train = np.array([[0, 0], [1, 0], [1, 1], [2, 1], [3, 1], [0, 2], [3, 3]])
    kg = np.array([[0, 0, 4], [1, 0, 4], [2, 0, 5], [3, 1, 6]])
    dataset = Dataset("tiny", 4, 4, train=train, kg=kg, n_entities=3, relation_names=["r0", "r1"])
    table = kg_alignment(dataset, permutations=5, max_pairs=50, min_pairs=1)
    row = table.set_index("relation").loc["r0"]
    assert row["cosine"] == pytest.approx(1 / math.sqrt(2 * 3))     # one shared user over sqrt(2) sqrt(3)
    assert row["pairs"] == 1 and row["triples"] == 3 and row["items"] == 3


def test_informative_links_pass_and_scrambled_links_do_not(synthetic):
    good = kg_alignment(synthetic, permutations=19).set_index("relation")
    bad = kg_alignment(scrambled(synthetic), permutations=19).set_index("relation")
    assert good.loc["all", "ratio"] > 2.0 and good.loc["all", "p"] == pytest.approx(1 / 20)
    assert 0.8 < bad.loc["all", "ratio"] < 1.25 and bad.loc["all", "p"] > 0.05
    assert set(good.index) == {"in_cluster", "has_attribute", "brand", "all"}


def test_bad_options_are_input_errors(synthetic):
    with pytest.raises(InputError, match="permutations"):
        kg_alignment(synthetic, permutations=0)


def test_cli_kg_check(capsys, synthetic):
    assert main(["data", "kg-check", "synthetic", "--permutations", "19"]) == 0
    out = capsys.readouterr().out
    assert "in_cluster" in out and "permutation p 0.050" in out and "share more users" in out
    assert main(["data", "kg-check", "synthetic", "--permutations", "9"]) == 0
    assert "too few permutations" in capsys.readouterr().out
    assert main(["data", "kg-check", "synthetic", "--permutations", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dglmm: error: kg check: permutations" in err


def test_cli_kg_check_without_a_kg_is_one_line(capsys, monkeypatch, synthetic):
    import dglmm.cli

    no_kg = dataclasses.replace(synthetic, kg=np.zeros((0, 3), np.int64), n_entities=0, relation_names=[])
    monkeypatch.setattr(dglmm.cli, "_load", lambda spec: no_kg)
    assert main(["data", "kg-check", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no knowledge graph" in err
