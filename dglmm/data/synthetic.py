"""A synthetic multimodal dataset with planted structure, so that models can be told apart.

The default is sparse (1,000 users x 2,000 items, about 7 training interactions per item, feature noise 0.5)
so that item content matters: on it LATTICE and MICRO beat LightGCN, as on the papers' datasets.

Items belong to latent clusters and carry a latent vector; each user prefers one or two clusters. A user's
interactions are sampled without replacement from the softmax of the planted logits

    logit(u, i) = <p_u, z_i> / sqrt(latent_dim) + cluster_bonus * [cluster(i) preferred by u]
                  + popularity_skew * log(1 / popularity_rank(i))          (Zipf-like popularity)

Features of modality m are ``z_i W_m + C_m[cluster(i)] + feature_noise * N(0, 1)`` (a random projection of
the latent, a cluster signal and noise), so they are informative but not perfect. The KG links items to
their (noisy) cluster entity, to a few attribute entities chosen by the latent, and to a brand (mostly of
the item's cluster) that itself points to its cluster. A fraction of items is cold: their sampled
interactions are moved out of training into valid/test. Everything is vectorised and seeded.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from dglmm.data.dataset import Dataset
from dglmm.data.formats.common import splits_from_labels
from dglmm.data.splits import TRAIN, split_labels

DEFAULT_DIMS = {"image": 64, "text": 32}
PAPER_DIMS = {"image": 4096, "text": 384}
SMALL = {"n_users": 1000, "n_items": 2000, "interactions_per_user": 15.0}
BABY = {"n_users": 19_445, "n_items": 7_050, "interactions_per_user": 160_792 / 19_445}
RELATIONS = ["in_cluster", "has_attribute", "brand", "brand_in_cluster"]


@dataclass
class PlantedStructure:
    """The ground truth behind a synthetic dataset (for oracle baselines and sanity tests)."""

    item_cluster: np.ndarray
    user_clusters: np.ndarray
    item_latent: np.ndarray
    user_latent: np.ndarray
    item_log_popularity: np.ndarray
    cluster_bonus: float
    popularity_skew: float
    cold_items: np.ndarray

    def logits(self, users: np.ndarray) -> np.ndarray:
        """Planted logits ``[len(users), n_items]`` whose softmax the interactions were sampled from."""
        users = np.asarray(users)
        scale = np.float32(1 / np.sqrt(self.item_latent.shape[1]))
        affinity = (self.user_latent[users] * scale) @ self.item_latent.T
        bonus = self.user_clusters[users].astype(np.float32) * np.float32(self.cluster_bonus)
        affinity += bonus[:, self.item_cluster]
        affinity += np.float32(self.popularity_skew) * self.item_log_popularity
        return affinity


def _latents(rng: np.random.Generator, n_users: int, n_items: int, n_clusters: int,
             latent_dim: int) -> tuple[np.ndarray, ...]:
    """Item clusters (balanced), item latents, user cluster masks (1 or 2 clusters) and user latents."""
    centers = rng.standard_normal((n_clusters, latent_dim)).astype(np.float32)
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters)
    item_latent = centers[item_cluster] + 0.5 * rng.standard_normal((n_items, latent_dim), dtype=np.float32)
    first = rng.integers(n_clusters, size=n_users)
    second = (first + rng.integers(1, max(2, n_clusters), size=n_users)) % n_clusters
    mask = np.zeros((n_users, n_clusters), dtype=bool)
    mask[np.arange(n_users), first] = True
    two = rng.random(n_users) < 0.5
    mask[np.flatnonzero(two), second[two]] = True
    user_latent = (mask @ centers) / mask.sum(1, keepdims=True)
    user_latent += 0.3 * rng.standard_normal((n_users, latent_dim), dtype=np.float32)
    return item_cluster, item_latent, mask, user_latent.astype(np.float32)


def _sample(rng: np.random.Generator, truth: PlantedStructure, counts: np.ndarray,
            chunk_cells: int = 1 << 22) -> np.ndarray:
    """Per user, ``counts[u]`` distinct items from softmax(logits) via Gumbel top-k, in user chunks."""
    n_users, n_items = len(counts), len(truth.item_cluster)
    step = max(1, chunk_cells // n_items)
    out = []
    for start in range(0, n_users, step):
        users = np.arange(start, min(n_users, start + step))
        noise = rng.standard_exponential((len(users), n_items), dtype=np.float32)
        scores = truth.logits(users) - np.log(np.maximum(noise, np.float32(1e-30)))
        k = int(counts[users].max())
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
        keep = np.arange(k)[None, :] < counts[users][:, None]
        out.append(np.stack([np.broadcast_to(users[:, None], top.shape)[keep], top[keep]], axis=1))
    return np.concatenate(out).astype(np.int64)


def _features(rng: np.random.Generator, truth: PlantedStructure, dims: dict[str, int],
              noise: float) -> dict[str, np.ndarray]:
    latent_dim = truth.item_latent.shape[1]
    n_clusters = truth.user_clusters.shape[1]
    feats = {}
    for name, dim in dims.items():
        projection = rng.standard_normal((latent_dim, dim), dtype=np.float32) / np.sqrt(latent_dim)
        cluster_signal = 0.5 * rng.standard_normal((n_clusters, dim), dtype=np.float32)
        feat = truth.item_latent @ projection + cluster_signal[truth.item_cluster]
        feat += noise * rng.standard_normal(feat.shape, dtype=np.float32)
        feats[name] = feat.astype(np.float32)
    return feats


def _kg(rng: np.random.Generator, truth: PlantedStructure, n_attributes: int) -> tuple[np.ndarray, int]:
    """Triples ``(head, relation, tail)`` over :data:`RELATIONS` and the number of non-item entities."""
    n_items, n_clusters = len(truth.item_cluster), truth.user_clusters.shape[1]
    n_brands = max(n_clusters, n_items // 20)
    items = np.arange(n_items)
    cluster_of = np.where(rng.random(n_items) < 0.1, rng.integers(n_clusters, size=n_items), truth.item_cluster)
    parts = [np.stack([items, np.zeros(n_items, int), n_items + cluster_of], 1)]
    if n_attributes:
        directions = rng.standard_normal((n_attributes, truth.item_latent.shape[1]), dtype=np.float32)
        score = truth.item_latent @ directions.T + rng.gumbel(size=(n_items, n_attributes))
        chosen = np.argsort(-score, axis=1)[:, : min(3, n_attributes)]
        heads = np.repeat(items, chosen.shape[1])
        parts.append(np.stack([heads, np.ones_like(heads), n_items + n_clusters + chosen.ravel()], 1))
    parts += _brand_triples(rng, truth.item_cluster, n_clusters, n_brands, n_items + n_clusters + n_attributes)
    return np.concatenate(parts).astype(np.int64), n_clusters + n_attributes + n_brands


def _brand_triples(rng: np.random.Generator, item_cluster: np.ndarray, n_clusters: int, n_brands: int,
                   first_brand: int) -> list[np.ndarray]:
    """Item -brand-> brand (80% a brand of the item's cluster) and brand -brand_in_cluster-> cluster."""
    n_items = len(item_cluster)
    per_cluster = (n_brands - 1 - item_cluster) // n_clusters + 1  # brands c, c + C, c + 2C, ...
    brand = item_cluster + n_clusters * (rng.random(n_items) * per_cluster).astype(int)
    brand = np.where(rng.random(n_items) < 0.2, rng.integers(n_brands, size=n_items), brand)
    brands = np.arange(n_brands)
    return [np.stack([np.arange(n_items), np.full(n_items, 2), first_brand + brand], 1),
            np.stack([first_brand + brands, np.full(n_brands, 3), n_items + brands % n_clusters], 1)]


def _move_cold(rng: np.random.Generator, pairs: np.ndarray, labels: np.ndarray,
               cold: np.ndarray, n_items: int) -> np.ndarray:
    """Training interactions of cold items go to valid or test at random."""
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold] = True
    moved = (labels == TRAIN) & is_cold[pairs[:, 1]]
    labels = labels.copy()
    labels[moved] = 1 + rng.integers(2, size=int(moved.sum()))
    return labels


def _interactions(rng: np.random.Generator, truth: PlantedStructure, mean_count: float, min_per_user: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampled pairs and their split labels: per-user 8:1:1, then cold items' training pairs moved out.

    Users get ``min_per_user`` plus a geometric number of interactions (mean ``mean_count``).
    """
    n_users, n_items = truth.user_latent.shape[0], truth.item_latent.shape[0]
    extra = rng.geometric(1.0 / max(1.0, mean_count - min_per_user + 1), size=n_users) - 1
    counts = np.clip(min_per_user + extra, 1, max(1, n_items // 2))
    pairs = _sample(rng, truth, counts)
    labels = _move_cold(rng, pairs, split_labels(pairs[:, 0], seed=seed), truth.cold_items, n_items)
    return pairs, labels


def _generate(n_users: int | None, n_items: int | None, n_clusters: int, latent_dim: int,
              interactions_per_user: float | None, min_per_user: int, modality_dims: dict[str, int] | None,
              feature_noise: float, n_kg_attributes: int, kg: bool, cold_item_frac: float,
              popularity_skew: float, cluster_bonus: float, seed: int, paper_shapes: bool, baby_sized: bool,
              ) -> tuple[Dataset, PlantedStructure]:
    preset = BABY if baby_sized else SMALL
    n_users = n_users or preset["n_users"]
    n_items = n_items or preset["n_items"]
    mean_count = interactions_per_user or preset["interactions_per_user"]
    dims = modality_dims if modality_dims is not None else (
        PAPER_DIMS if paper_shapes or baby_sized else DEFAULT_DIMS)
    rng = np.random.default_rng(seed)
    item_cluster, item_latent, user_mask, user_latent = _latents(rng, n_users, n_items, n_clusters, latent_dim)
    log_pop = -np.log(rng.permutation(n_items) + 1.0).astype(np.float32)
    cold = np.sort(rng.choice(n_items, size=int(round(cold_item_frac * n_items)), replace=False))
    truth = PlantedStructure(item_cluster, user_mask, item_latent, user_latent, log_pop, cluster_bonus,
                             popularity_skew, cold)
    pairs, labels = _interactions(rng, truth, mean_count, min_per_user, seed)
    triples, n_entities = _kg(rng, truth, n_kg_attributes) if kg else (np.zeros((0, 3), np.int64), 0)
    name = "synthetic-baby" if baby_sized else "synthetic"
    dataset = Dataset(
        name=name, n_users=n_users, n_items=n_items, modalities=_features(rng, truth, dims, feature_noise),
        n_entities=n_entities, kg=triples, relation_names=list(RELATIONS) if kg else [],
        source=f"synthetic(seed={seed})", notes=[f"{n_clusters} planted clusters, {len(cold)} cold items"],
        **splits_from_labels(pairs, labels))
    dataset.validate()
    return dataset, truth


def make_synthetic(
    n_users: int | None = None, n_items: int | None = None, n_clusters: int = 10, latent_dim: int = 16,
    interactions_per_user: float | None = None, min_per_user: int = 5,
    modality_dims: dict[str, int] | None = None, feature_noise: float = 0.5, n_kg_attributes: int = 30,
    kg: bool = True, cold_item_frac: float = 0.05, popularity_skew: float = 1.0, cluster_bonus: float = 1.0,
    seed: int = 2024, paper_shapes: bool = False, baby_sized: bool = False,
) -> Dataset:
    """A small synthetic dataset with planted clusters, features, KG, popularity skew and cold items.

    Defaults: 1,000 users x 2,000 items, about 15 interactions per user (at least ``min_per_user``), 10
    clusters, image 64-d / text 32-d, 5% cold items, per-user 8:1:1 split (seeded). ``paper_shapes=True``
    uses image 4096-d / text 384-d; ``baby_sized=True`` gives Baby's 19,445 users x 7,050 items with about
    8.3 interactions per user and the paper shapes. Explicit sizes override the presets. See the module
    docstring for the generative model; :func:`make_synthetic_with_truth` also returns the ground truth.
    """
    return _generate(**locals())[0]


def make_synthetic_with_truth(**options: Any) -> tuple[Dataset, PlantedStructure]:
    """:func:`make_synthetic` (same options) plus the :class:`PlantedStructure` it was drawn from."""
    bound = inspect.signature(make_synthetic).bind(**options)
    bound.apply_defaults()
    return _generate(**bound.arguments)
