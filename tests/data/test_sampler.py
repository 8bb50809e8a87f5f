import numpy as np
import pytest
import torch

from dglmm.data.sampler import BPRSampler


def _dense_pairs(seed: int, n_users: int = 8, n_items: int = 12, density: float = 0.7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    observed = rng.random((n_users, n_items)) < density
    observed[:, -1] = False  # every user keeps at least one negative
    return np.argwhere(observed).astype(np.int64)


def _epoch(sampler: BPRSampler) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(u.numpy(), p.numpy(), n.numpy()) for u, p, n in sampler]


def test_negatives_never_observed_exhaustive() -> None:
    pairs = _dense_pairs(0)
    train = set(map(tuple, pairs.tolist()))
    sampler = BPRSampler(pairs, 8, 12, batch_size=7, seed=1)
    for _ in range(20):
        for users, _, neg in _epoch(sampler):
            assert not any((u, n) in train for u, n in zip(users.tolist(), neg.tolist(), strict=True))


def test_every_positive_once_per_epoch() -> None:
    pairs = _dense_pairs(1)
    sampler = BPRSampler(pairs, 8, 12, batch_size=10, seed=0)
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-len(pairs) // 10)
        assert all(b[0].dtype == torch.long and len(b[0]) <= 10 for b in batches)
        seen = np.concatenate([np.stack([u.numpy(), p.numpy()], 1) for u, p, _ in batches])
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, pairs.tolist()))


def test_negatives_roughly_uniform() -> None:
    n_items = 50
    observed = np.arange(0, n_items, 2)  # user 0 may only get odd items
    pairs = np.stack([np.zeros_like(observed), observed], 1)
    sampler = BPRSampler(pairs, 1, n_items, batch_size=4, seed=3)
    neg = sampler.sample_negatives(np.zeros(25_000, dtype=np.int64))
    counts = np.bincount(neg, minlength=n_items)
    assert counts[observed].sum() == 0
    expected = len(neg) / 25
    chi2 = ((counts[1::2] - expected) ** 2 / expected).sum()
    assert chi2 < 70  # 24 degrees of freedom: mean 24, sd ~7


def test_state_restore_reproduces_batches() -> None:
    pairs = _dense_pairs(2, n_users=30, n_items=40, density=0.3)
    reference = BPRSampler(pairs, 30, 40, batch_size=16, seed=7)
    runs = [_epoch(reference) for _ in range(3)]
    first = BPRSampler(pairs, 30, 40, batch_size=16, seed=7)
    _epoch(first)
    state = first.state_dict()
    resumed = BPRSampler(pairs, 30, 40, batch_size=16, seed=999)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    for expected in runs[1:]:
        got = _epoch(resumed)
        assert all(all(np.array_equal(a, b) for a, b in zip(g, e, strict=True))
                   for g, e in zip(got, expected, strict=True))
    _epoch(first)  # the saved state is a snapshot, not a live view
    again = BPRSampler(pairs, 30, 40, batch_size=16, seed=7)
    _epoch(again)
    assert again.state_dict() == state


def test_user_with_all_but_one_item() -> None:
    n_items = 500
    pairs = np.stack([np.zeros(n_items - 1, dtype=np.int64), np.arange(1, n_items)], 1)
    sampler = BPRSampler(pairs, 1, n_items, batch_size=64, seed=0)
    for _, _, neg in sampler:
        assert (neg == 0).all()


def test_user_with_every_item_rejected() -> None:
    pairs = np.array([[0, 0], [0, 1], [1, 0]])
    with pytest.raises(ValueError):
        BPRSampler(pairs, 2, 2, batch_size=2)


def test_several_negatives_per_positive() -> None:
    pairs = _dense_pairs(3)
    train = set(map(tuple, pairs.tolist()))
    sampler = BPRSampler(pairs, 8, 12, batch_size=5, seed=0, neg_per_pos=3)
    for users, pos, neg in sampler:
        assert neg.shape == (len(users), 3) and len(pos) == len(users)
        assert not any((u, n) in train for u, row in zip(users.tolist(), neg.tolist(), strict=True)
                       for n in row)
