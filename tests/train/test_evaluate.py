import math

import numpy as np
import pytest
import torch

from dglmm.data.dataset import Dataset
from dglmm.train.evaluate import (
    InteractionIndex,
    evaluate_full_ranking,
    evaluate_popularity,
    popularity_scores,
    rank_topk,
    stable_topk,
)

KS = (1, 3, 10, 50)


def _random_dataset(seed: int, n_users: int = 60, n_items: int = 40) -> Dataset:
    """Disjoint splits; some users have many train items (few unmasked), none, or no valid/test items."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        items = rng.permutation(n_items)
        n_train = [0, 2, 5, 12, 33][u % 5]
        n_valid, n_test = rng.integers(0, 4), rng.integers(0, 15)
        cuts = np.cumsum([n_train, n_valid, n_test])
        for name, part in zip(splits, np.split(items[:cuts[-1]], cuts[:-1]), strict=True):
            splits[name] += [(u, int(i)) for i in part]
    arrays = {k: np.array(v, dtype=np.int64).reshape(-1, 2) for k, v in splits.items()}
    return Dataset("random", n_users, n_items, **arrays)


def _scores(seed: int, shape: tuple[int, int], ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(0, 3, size=shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _items(pairs: np.ndarray, user: int) -> set[int]:
    return set(pairs[pairs[:, 0] == user, 1].tolist())


def _brute_force(scores: np.ndarray, ds: Dataset, split: str, masked_splits: tuple[str, ...],
                 subset: np.ndarray | None = None) -> dict[int, dict[str, float]]:
    """Per-user metrics with python loops and ``np.argsort(-scores, kind="stable")``."""
    out = {}
    for u in range(ds.n_users):
        gt = _items(ds.split(split), u)
        if subset is not None:
            gt &= set(subset.tolist())
        if not gt or not _items(ds.train, u):
            continue
        masked = set().union(*(_items(ds.split(s), u) for s in masked_splits))
        s = scores[u].copy()
        s[sorted(masked)] = -np.inf
        order = np.argsort(-s, kind="stable")
        res = {}
        for k in KS:
            rel = [int(i in gt and i not in masked) for i in order[:k]]
            n_hit = sum(rel)
            dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
            idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gt), k)))
            ap, seen = 0.0, 0
            for i, r in enumerate(rel):
                seen += r
                ap += r * seen / (i + 1)
            res |= {f"recall@{k}": n_hit / len(gt), f"precision@{k}": n_hit / k, f"ndcg@{k}": dcg / idcg,
                    f"map@{k}": ap / min(len(gt), k), f"hit@{k}": float(n_hit > 0)}
        out[u] = res
    return out


def _score_fn(scores: np.ndarray):
    table = torch.from_numpy(scores)
    return lambda users: table[users]


def _check(summary: dict, per_user: dict, ref: dict[int, dict[str, float]]) -> None:
    assert per_user["user"].tolist() == sorted(ref)
    assert summary["n_users"] == len(ref)
    for name in ref[next(iter(ref))]:
        expected = np.array([ref[u][name] for u in sorted(ref)])
        np.testing.assert_allclose(per_user[name], expected, atol=1e-12, err_msg=name)
        assert summary[name] == pytest.approx(expected.mean(), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("split", "mask_valid"), [("valid", False), ("test", False), ("test", True)])
def test_matches_brute_force(ties: bool, split: str, mask_valid: bool) -> None:
    ds = _random_dataset(1)
    scores = _scores(2, (ds.n_users, ds.n_items), ties)
    summary, per_user = evaluate_full_ranking(_score_fn(scores), ds, split, ks=KS, chunk_size=7,
                                              mask_valid=mask_valid, return_per_user=True)
    masked = ("train", "valid") if mask_valid else ("train",)
    _check(summary, per_user, _brute_force(scores, ds, split, masked))


def test_item_subset_matches_brute_force() -> None:
    ds = _random_dataset(4)
    scores = _scores(5, (ds.n_users, ds.n_items), ties=True)
    subset = np.arange(0, ds.n_items, 3)
    summary, per_user = evaluate_full_ranking(_score_fn(scores), ds, "test", ks=KS, chunk_size=16,
                                              item_subset=subset, return_per_user=True)
    ref = _brute_force(scores, ds, "test", ("train",), subset)
    _check(summary, per_user, ref)
    assert summary["n_users"] < evaluate_full_ranking(_score_fn(scores), ds, "test", ks=KS)["n_users"]


def test_users_without_train_or_target_are_skipped() -> None:
    ds = Dataset("tiny", 4, 6,
                 train=np.array([[0, 0], [1, 1], [3, 2]]),
                 test=np.array([[0, 3], [2, 4], [1, 5]]))
    _, per_user = evaluate_full_ranking(_score_fn(np.zeros((4, 6), np.float32)), ds, "test", ks=(2,),
                                        return_per_user=True)
    assert per_user["user"].tolist() == [0, 1]  # 2 has no train, 3 no test items


def test_chunk_size_does_not_change_results() -> None:
    ds = _random_dataset(6)
    fn = _score_fn(_scores(7, (ds.n_users, ds.n_items), ties=True))
    a = evaluate_full_ranking(fn, ds, "test", ks=KS, chunk_size=1)
    b = evaluate_full_ranking(fn, ds, "test", ks=KS, chunk_size=1000)
    assert a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("k", [1, 5, 17, 40, 60])
def test_rank_topk_heavy_ties_equals_stable_argsort(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 3, size=(50, 40)).astype(np.float32)
    scores[0] = 1.0  # a row where every item ties
    rows, cols = np.nonzero(rng.random(scores.shape) < 0.3)
    original = torch.from_numpy(scores.copy())
    got = rank_topk(original, torch.from_numpy(rows), torch.from_numpy(cols), k)
    masked = scores.copy()
    masked[rows, cols] = -np.inf
    expected = np.argsort(-masked, kind="stable")[:, :k]
    assert got.tolist() == expected.tolist()
    assert torch.equal(original, torch.from_numpy(scores))  # input untouched


def test_stable_topk_continuous_and_nan() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((30, 100)).astype(np.float32)
    got = stable_topk(torch.from_numpy(scores), 20)
    assert got.tolist() == np.argsort(-scores, kind="stable")[:, :20].tolist()
    scores[:, :5] = np.nan
    got = rank_topk(torch.from_numpy(scores), None, None, 100)
    assert set(got[:, -5:].flatten().tolist()) == set(range(5))  # NaN ranks last


def test_masking_never_lets_a_masked_item_into_topk() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n_users, n_items, k = 25, 60, int(rng.integers(1, 30))
        pairs = np.stack([rng.integers(0, n_users, 600), rng.integers(0, n_items, 600)], 1)
        index = InteractionIndex.from_pairs(pairs, n_users, n_items)
        rows, cols = index.coo(np.arange(n_users))
        scores = torch.from_numpy(_scores(seed, (n_users, n_items), ties=bool(seed % 2)))
        scores[rows, cols] += 100.0  # masked items would win without the mask
        top = rank_topk(scores, torch.from_numpy(rows), torch.from_numpy(cols), k)
        for u in range(n_users):
            n_free = n_items - len(index.items_of(u))
            assert not set(top[u, :min(k, n_free)].tolist()) & set(index.items_of(u).tolist())


def test_interaction_index() -> None:
    pairs = np.array([[2, 5], [0, 1], [2, 3], [0, 1], [2, 0]])
    index = InteractionIndex.from_pairs(pairs, n_users=4, n_items=6)
    assert index.counts().tolist() == [1, 0, 3, 0]
    assert index.items_of(2).tolist() == [0, 3, 5]
    rows, cols = index.coo(np.array([2, 1, 0]))
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (0, 3), (0, 5), (2, 1)]
    dense = index.dense(np.array([0, 2]))
    assert dense.shape == (2, 6) and dense.sum().item() == 4 and dense[1, 3]


def test_popularity_baseline_matches_brute_force() -> None:
    ds = _random_dataset(8)
    pop = popularity_scores(ds)
    assert pop.tolist() == np.bincount(ds.train[:, 1], minlength=ds.n_items).tolist()
    summary = evaluate_popularity(ds, "test", ks=KS, chunk_size=9)
    ref = _brute_force(np.tile(pop.numpy(), (ds.n_users, 1)), ds, "test", ("train",))
    assert summary["recall@10"] == pytest.approx(np.mean([r["recall@10"] for r in ref.values()]), abs=1e-12)


def test_empty_target_and_bad_scores() -> None:
    ds = Dataset("empty", 3, 4, train=np.array([[0, 1]]))
    summary = evaluate_full_ranking(_score_fn(np.zeros((3, 4), np.float32)), ds, "valid", ks=(2,))
    assert summary["n_users"] == 0 and math.isnan(summary["recall@2"])
    ds.test = np.array([[0, 2]])
    with pytest.raises(ValueError):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), ds, "test", ks=(2,))


def test_masked_item_filling_the_tail_is_never_a_hit() -> None:
    ds = Dataset("overlap", 1, 4, train=np.array([[0, 0], [0, 1], [0, 2]]), test=np.array([[0, 2], [0, 3]]))
    summary = evaluate_full_ranking(_score_fn(np.zeros((1, 4), np.float32)), ds, "test", ks=(4,))
    assert summary["recall@4"] == 0.5  # item 2 is ranked 4th only as masked filler
