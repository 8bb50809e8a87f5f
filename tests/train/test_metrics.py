import math

import numpy as np
import pytest
import torch

from dglmm.train.metrics import metric_names, topk_metrics


def _reference(rel: list[int], n_gt: int, k: int) -> dict[str, float]:
    """Loop-based metrics of one user from the relevance list of its ranking."""
    rel = rel[:k]
    n_hit = sum(rel)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(n_gt, k)))
    seen, ap = 0, 0.0
    for i, r in enumerate(rel):
        if r:
            seen += 1
            ap += seen / (i + 1)
    return {"recall": n_hit / n_gt, "ndcg": dcg / idcg, "precision": n_hit / k,
            "map": ap / min(n_gt, k), "hit": float(n_hit > 0)}


def test_hand_computed_example() -> None:
    hits = torch.tensor([[True, False, True, False, False]])
    out = topk_metrics(hits, torch.tensor([3]), ks=(2, 5))
    idcg3 = 1 + 1 / math.log2(3) + 0.5
    expected = {
        "recall@5": 2 / 3, "precision@5": 0.4, "hit@5": 1.0,
        "ndcg@5": 1.5 / idcg3, "map@5": (1 + 2 / 3) / 3,
        "recall@2": 1 / 3, "precision@2": 0.5, "ndcg@2": 1 / (1 + 1 / math.log2(3)), "map@2": 0.5,
    }
    for name, value in expected.items():
        assert out[name].item() == pytest.approx(value, abs=1e-12), name
    assert out["ndcg@5"].item() == pytest.approx(0.703918, abs=1e-6)
    assert out["map@5"].item() == pytest.approx(0.555556, abs=1e-6)


def test_random_hits_match_reference() -> None:
    rng = np.random.default_rng(3)
    ks = (1, 3, 10, 20)
    n_rel = rng.integers(1, 30, size=200)
    hits = rng.random((200, 20)) < 0.3
    for b in range(200):  # a user cannot hit more items than it has
        hits[b, np.flatnonzero(hits[b])[n_rel[b]:]] = False
    out = topk_metrics(torch.from_numpy(hits), torch.from_numpy(n_rel), ks)
    assert set(out) == set(metric_names(ks))
    for b in range(200):
        for k in ks:
            ref = _reference(hits[b].astype(int).tolist(), int(n_rel[b]), k)
            for m, v in ref.items():
                assert out[f"{m}@{k}"][b].item() == pytest.approx(v, abs=1e-12)


def test_perfect_ranking_scores_one() -> None:
    hits = torch.tensor([[True] * 4 + [False] * 6, [True] * 10])
    out = topk_metrics(hits, torch.tensor([4, 25]), ks=(10,))
    assert out["ndcg@10"].tolist() == pytest.approx([1.0, 1.0])
    assert out["map@10"].tolist() == pytest.approx([1.0, 1.0])
    assert out["recall@10"].tolist() == pytest.approx([1.0, 0.4])


def test_too_few_ranks_rejected() -> None:
    with pytest.raises(ValueError):
        topk_metrics(torch.zeros(2, 5, dtype=torch.bool), torch.ones(2), ks=(10,))
