"""Seeded train/valid/test splits: per user (warm start) and by item (cold start, MICRO section 4.1.3)."""

from __future__ import annotations

import dataclasses

import numpy as np

from dglmm.data.dataset import SPLITS, Dataset
from dglmm.data.validate import check_splits_nonempty

TRAIN, VALID, TEST = 0, 1, 2


def _check_ratios(ratios: tuple[float, float, float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r[0] <= 0:
        raise ValueError(f"ratios must be three non-negative numbers with a positive train part, got {ratios}")
    return r / r.sum()


def split_sizes(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Number of valid and test interactions for users with ``n`` interactions each.

    Rule: a split with a positive ratio gets ``max(1, round(n * ratio))`` interactions (half rounded up), but
    training always keeps at least one; test is served before valid. So users with one interaction keep it
    in train, users with two get train + test (or train + valid when the test ratio is 0), and users with
    three or more get at least one interaction in every split with a positive ratio.
    """
    r = _check_ratios(ratios)
    n = np.asarray(n, dtype=np.int64)

    def part(ratio: float, cap: np.ndarray) -> np.ndarray:
        size = np.maximum(1, np.floor(n * ratio + 0.5).astype(np.int64)) if ratio > 0 else np.zeros_like(n)
        return np.clip(size, 0, np.maximum(cap, 0))

    n_test = part(r[2], n - 1)
    n_valid = part(r[1], n - 1 - n_test)
    return n_valid, n_test


def split_labels(users: np.ndarray, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2024,
                 order_key: np.ndarray | None = None) -> np.ndarray:
    """Split label (0/1/2 = train/valid/test) of every interaction, per user, vectorised.

    Within a user, interactions are ordered by ``order_key`` (e.g. timestamps; ties broken at random) or
    at random when it is None; the first ones go to train, then valid, then test (so with timestamps the
    latest interactions are tested). Sizes follow :func:`split_sizes`. Deterministic for a given seed.
    """
    users = np.asarray(users, dtype=np.int64)
    if len(users) == 0:
        return np.zeros(0, dtype=np.int8)
    tie = np.random.default_rng(seed).random(len(users))
    keys = (tie, users) if order_key is None else (tie, np.asarray(order_key), users)
    order = np.lexsort(keys)
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    n = counts[users]
    n_valid, n_test = split_sizes(n, ratios)
    labels = np.full(len(users), TRAIN, dtype=np.int8)
    labels[rank >= n - n_test - n_valid] = VALID
    labels[rank >= n - n_test] = TEST
    return labels


def per_user_split(pairs: np.ndarray, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2024,
                   order_key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split (user, item) pairs into train, valid, test per user; see :func:`split_labels` for the rule."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    labels = split_labels(pairs[:, 0], ratios, seed, order_key)
    train, valid, test = (pairs[labels == k] for k in (TRAIN, VALID, TEST))
    return train, valid, test


def labelled_pairs(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All interactions of ``dataset`` as pairs plus their split label (0/1/2)."""
    parts = [dataset.split(s) for s in SPLITS]
    labels = np.concatenate([np.full(len(p), k, dtype=np.int8) for k, p in enumerate(parts)])
    return np.concatenate(parts).astype(np.int64).reshape(-1, 2), labels


def cold_start_split(dataset: Dataset, frac: float = 0.2, seed: int = 2024,
                     keep_warm_eval: bool = False) -> Dataset:
    """Item cold-start protocol of MICRO (section 4.1.3), as a new Dataset.

    A random ``frac`` of the items that have interactions becomes cold: ALL their interactions (from every
    split) leave training. The cold items themselves are split in two: the interactions of the first
    ``floor(n_cold / 2)`` form the validation set, those of the others the test set (items are split, not
    interactions). Warm items keep their training interactions; their original valid/test interactions are
    dropped so that evaluation only involves cold items, unless ``keep_warm_eval`` adds them back.
    Features, KG and ids are unchanged. Seeded.
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    pairs, labels = labelled_pairs(dataset)
    candidates = np.unique(pairs[:, 1])
    n_cold = int(round(frac * len(candidates)))
    if n_cold < 2:
        raise ValueError(f"frac={frac} selects {n_cold} of {len(candidates)} items; need at least 2 cold items")
    cold = np.random.default_rng(seed).permutation(candidates)[:n_cold]
    role = np.zeros(dataset.n_items, dtype=np.int8)
    role[cold[: n_cold // 2]] = VALID
    role[cold[n_cold // 2:]] = TEST
    item_role = role[pairs[:, 1]]
    warm = item_role == TRAIN
    splits = {"train": pairs[warm & (labels == TRAIN)]}
    for k, name in ((VALID, "valid"), (TEST, "test")):
        chosen = (item_role == k) | (warm & (labels == k)) if keep_warm_eval else item_role == k
        splits[name] = pairs[chosen]
    check_splits_nonempty(splits, dataset.source or dataset.name)
    note = (f"cold-start split (MICRO 4.1.3): {n_cold} cold items (seed {seed}, frac {frac}), "
            f"warm valid/test {'kept' if keep_warm_eval else 'dropped'}")
    return dataclasses.replace(dataset, name=f"{dataset.name}-cold", notes=[*dataset.notes, note], **splits)
