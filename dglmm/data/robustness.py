"""Robustness studies (SLIF-MR Fig. 7): corrupt the TRAINING data only; validation and test stay untouched.

* :func:`noisy_interactions`: a share of the training interactions gets a random item instead of its own
  (the user keeps its activity; the new pair is in no split, so no evaluation item leaks into training);
* :func:`noisy_kg_tails`: a share of the KG triples gets a random tail node (item or entity) instead;
* :func:`drop_features`: a share of the items loses the features of every modality (all-zero rows: the
  item lacks the modality, :meth:`Dataset.feature_mask`; kNN graphs give it no edges, models mask it).

:func:`perturb` applies the three with one seed (``data.noise_interactions``, ``data.noise_kg``,
``data.drop_features``, ``data.noise_seed``); every model can be trained on the result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dglmm.data.dataset import Dataset

_ROUNDS = 32


def _pick(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    return np.sort(rng.choice(n, size=int(round(share * n)), replace=False))


def noisy_interactions(dataset: Dataset, share: float, rng: np.random.Generator) -> np.ndarray:
    """The training pairs with ``share`` of them given a uniformly random unobserved item."""
    train = dataset.train.copy()
    rows = _pick(rng, len(train), share)
    every = np.concatenate([dataset.train, dataset.valid, dataset.test])
    taken = np.unique(every[:, 0] * dataset.n_items + every[:, 1])
    users = train[rows, 0]
    items = rng.integers(0, dataset.n_items, size=len(rows))
    for _ in range(_ROUNDS):  # redraw the (rare) clashes with existing pairs, or with each other
        keys = users * dataset.n_items + items
        _, first = np.unique(keys, return_index=True)
        clash = np.isin(keys, taken)
        clash[np.setdiff1d(np.arange(len(keys)), first)] = True
        if not clash.any():
            break
        items[clash] = rng.integers(0, dataset.n_items, size=int(clash.sum()))
    train[rows, 1] = items
    return np.unique(train, axis=0) if len(rows) else train


def noisy_kg_tails(dataset: Dataset, share: float, rng: np.random.Generator) -> np.ndarray:
    """The KG triples with ``share`` of their tails replaced by a random other KG node."""
    kg = dataset.kg.copy()
    rows = _pick(rng, len(kg), share)
    n_nodes = dataset.n_items + dataset.n_entities
    tails = rng.integers(0, n_nodes - 1, size=len(rows))
    kg[rows, 2] = tails + (tails >= kg[rows, 2])  # uniform over the nodes other than the original tail
    return kg


def drop_features(dataset: Dataset, share: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every modality's features with the rows of ``share`` of the items set to zero (the same items)."""
    items = _pick(rng, dataset.n_items, share)
    out = {}
    for m, feats in dataset.modalities.items():
        feats = feats.copy()
        feats[items] = 0
        out[m] = feats
    return out


def perturb(dataset: Dataset, interactions: float = 0.0, kg: float = 0.0, features: float = 0.0,
            seed: int = 2024) -> Dataset:
    """A copy of ``dataset`` with the three corruptions applied to its training data (shares in [0, 1))."""
    if not (interactions or kg or features):
        return dataset
    rng = np.random.default_rng(seed)
    changes: dict = {}
    notes = []
    if interactions:
        changes["train"] = noisy_interactions(dataset, interactions, rng)
        notes.append(f"{interactions:.0%} of training interactions replaced by random ones")
    if kg and len(dataset.kg):
        changes["kg"] = noisy_kg_tails(dataset, kg, rng)
        notes.append(f"{kg:.0%} of KG tails replaced")
    if features and dataset.modalities:
        changes["modalities"] = drop_features(dataset, features, rng)
        notes.append(f"features of {features:.0%} of the items removed")
    tag = f"-noise(i{interactions:g},kg{kg:g},f{features:g},s{seed})"
    return dataclasses.replace(dataset, name=dataset.name + tag, notes=[*dataset.notes, *notes], **changes)
