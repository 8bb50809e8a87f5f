"""Per-user split rule and the item cold-start protocol."""

from __future__ import annotations

import numpy as np
import pytest

from dglmm.data.dataset import SPLITS
from dglmm.data.splits import cold_start_split, per_user_split, split_labels, split_sizes
from dglmm.data.synthetic import make_synthetic


def random_pairs(n_users: int, per_user: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    return np.stack([users, rng.permutation(len(users))], axis=1)


def test_split_sizes_rule() -> None:
    n = np.array([1, 2, 3, 4, 10, 15, 100])
    n_valid, n_test = split_sizes(n, (0.8, 0.1, 0.1))
    assert n_test.tolist() == [0, 1, 1, 1, 1, 2, 10]
    assert n_valid.tolist() == [0, 0, 1, 1, 1, 2, 10]
    n_valid, n_test = split_sizes(n, (0.9, 0.1, 0.0))
    assert n_test.tolist() == [0] * 7 and n_valid.tolist() == [0, 1, 1, 1, 1, 2, 10]


def test_every_user_with_three_gets_every_split() -> None:
    counts = np.random.default_rng(1).integers(1, 30, size=500)
    pairs = random_pairs(500, counts)
    parts = per_user_split(pairs, seed=5)
    seen = [np.bincount(p[:, 0], minlength=500) for p in parts]
    assert sum(len(p) for p in parts) == len(pairs)
    assert all((s[counts >= 3] >= 1).all() for s in seen)
    assert (seen[0] >= 1).all()  # nobody loses all training interactions
    assert (seen[2][counts == 2] == 1).all() and (seen[1][counts <= 2] == 0).all()
    assert abs(len(parts[0]) / len(pairs) - 0.8) < 0.05


def test_split_is_seeded_and_preserves_pairs() -> None:
    pairs = random_pairs(50, np.full(50, 10))
    a, b, c = per_user_split(pairs, seed=3), per_user_split(pairs, seed=3), per_user_split(pairs, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    together = np.concatenate(a)
    assert {tuple(p) for p in together.tolist()} == {tuple(p) for p in pairs.tolist()}


def test_order_key_tests_the_latest() -> None:
    pairs = random_pairs(3, np.full(3, 10))
    times = np.tile(np.arange(10), 3)
    labels = split_labels(pairs[:, 0], seed=0, order_key=times)
    assert (times[labels == 2] == 9).all() and (times[labels == 1] == 8).all()


def test_split_of_50k_users_keeps_every_pair_once_with_the_size_rule() -> None:
    """Vectorised over users (no loop): a large input is split in one call, each user by the size rule."""
    counts = np.random.default_rng(0).integers(1, 40, size=50_000)
    pairs = random_pairs(50_000, counts)
    train, valid, test = per_user_split(pairs, seed=0)
    assert len(train) + len(valid) + len(test) == len(pairs)
    n_valid, n_test = split_sizes(counts, (0.8, 0.1, 0.1))
    np.testing.assert_array_equal(np.bincount(valid[:, 0], minlength=50_000), n_valid)
    np.testing.assert_array_equal(np.bincount(test[:, 0], minlength=50_000), n_test)


def test_bad_ratios() -> None:
    with pytest.raises(ValueError):
        split_sizes(np.array([3]), (0.0, 0.5, 0.5))


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=300, n_items=200, seed=11)


def test_cold_start_split_moves_whole_items(synthetic) -> None:
    cold = cold_start_split(synthetic, frac=0.2, seed=1)
    valid_items, test_items = set(cold.valid[:, 1].tolist()), set(cold.test[:, 1].tolist())
    train_items = set(cold.train[:, 1].tolist())
    assert not (valid_items & test_items) and not (train_items & (valid_items | test_items))
    assert len(valid_items | test_items) <= 40 and len(valid_items) >= 15 and len(test_items) >= 15
    original = {s: {tuple(p) for p in synthetic.split(s).tolist()} for s in SPLITS}
    everything = set().union(*original.values())
    # all interactions of the cold items are kept, and only them
    for items, pairs in ((valid_items, cold.valid), (test_items, cold.test)):
        assert {tuple(p) for p in pairs.tolist()} == {p for p in everything if p[1] in items}
    assert {tuple(p) for p in cold.train.tolist()} <= original["train"]
    assert cold.name.endswith("-cold") and cold.modalities is synthetic.modalities
    assert cold.n_items == synthetic.n_items


def test_cold_start_split_keep_warm_eval_and_seed(synthetic) -> None:
    a = cold_start_split(synthetic, seed=2)
    b = cold_start_split(synthetic, seed=2, keep_warm_eval=True)
    assert np.array_equal(a.train, b.train)
    assert len(b.valid) > len(a.valid) and len(b.test) > len(a.test)
    assert np.array_equal(cold_start_split(synthetic, seed=2).test, a.test)
    with pytest.raises(ValueError):
        cold_start_split(synthetic, frac=0.0)
