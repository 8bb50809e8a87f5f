"""Does a knowledge graph describe the items it is linked to?  A permutation test that needs no entity names.

If a dataset's item -> entity links are right, items that share a KG attribute (a director, a genre, a brand)
are consumed by more of the same users than they would be if the links were drawn at random.  The statistic is
the mean cosine of the training-user vectors of item pairs that share a tail entity (pairs sampled through the
entities, so a tail shared by thousands of items costs no more than any other).  Its null distribution comes
from the same KG with the items' ids permuted (every item keeps a KG profile, but not its own): ``ratio`` is the
statistic over the mean of the null draws, ``p`` the permutation p-value ``(1 + #null >= observed) / (1 + n)``.
A ratio near 1 and a large p mean the KG carries no collaborative signal, whatever a KG-aware model does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dglmm.data.dataset import Dataset
from dglmm.errors import InputError

MIN_PAIRS = 30


def kg_alignment(dataset: Dataset, permutations: int = 99, max_pairs: int = 20_000, seed: int = 0,
                 min_pairs: int = MIN_PAIRS) -> pd.DataFrame:
    """One row per relation with item heads and non-item tails (at least ``min_pairs`` sharing pairs), and a
    last row ``all`` that pools them: triples, items, sampled pairs, the observed mean cosine, the mean of the
    ``permutations`` null draws, their ``ratio`` and the permutation ``p``."""
    if permutations < 1 or max_pairs < 1:
        raise InputError(f"kg check: permutations and max_pairs must be >= 1, got {permutations}, {max_pairs}")
    rng = np.random.default_rng(seed)
    users = _item_user_matrix(dataset)
    kg = np.asarray(dataset.kg, dtype=np.int64).reshape(-1, 3)
    kg = kg[(kg[:, 0] < dataset.n_items) & (kg[:, 2] >= dataset.n_items)]
    names = dataset.relation_names or [str(r) for r in range(int(kg[:, 1].max()) + 1 if len(kg) else 0)]
    draws = [_statistics(users, kg, len(names), max_pairs, rng)]
    for _ in range(permutations):
        shuffled = kg.copy()
        shuffled[:, 0] = rng.permutation(dataset.n_items)[kg[:, 0]]
        draws.append(_statistics(users, shuffled, len(names), max_pairs, rng))
    observed, null = draws[0], np.array([d[:, 1] for d in draws[1:]])      # null: [permutations, relations + 1]
    rows = []
    for r, name in enumerate([*names, "all"]):
        pairs, value = observed[r]
        if pairs < max(1, min_pairs):
            continue
        in_relation = kg[:, 1] == r if r < len(names) else np.ones(len(kg), bool)
        rows.append({"relation": name, "triples": int(in_relation.sum()),
                     "items": len(np.unique(kg[in_relation, 0])), "pairs": int(pairs), "cosine": value,
                     "null_cosine": float(null[:, r].mean()), "ratio": value / max(float(null[:, r].mean()), 1e-12),
                     "p": (1 + int((null[:, r] >= value).sum())) / (1 + permutations)})
    return pd.DataFrame(rows, columns=["relation", "triples", "items", "pairs", "cosine", "null_cosine", "ratio",
                                       "p"])


def _item_user_matrix(dataset: Dataset) -> sp.csr_matrix:
    """Items x users, 1 for a training interaction, each row L2-normalised (so a row product is a cosine)."""
    train = np.asarray(dataset.train, dtype=np.int64).reshape(-1, 2)
    m = sp.csr_matrix((np.ones(len(train)), (train[:, 1], train[:, 0])), shape=(dataset.n_items, dataset.n_users))
    m.data[:] = 1.0
    norms = np.sqrt(np.asarray(m.sum(1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1.0)) @ m)


def _statistics(users: sp.csr_matrix, kg: np.ndarray, n_relations: int, max_pairs: int,
                rng: np.random.Generator) -> np.ndarray:
    """``[n_relations + 1, 2]``: sampled pairs and their mean cosine per relation, then over all relations."""
    out, pooled = np.zeros((n_relations + 1, 2)), []
    for r in range(n_relations):
        left, right = _sharing_pairs(kg[kg[:, 1] == r], max_pairs, rng)
        if len(left):
            cos = np.asarray(users[left].multiply(users[right]).sum(1)).ravel()
            out[r] = len(cos), cos.mean()
            pooled.append(cos)
    if pooled:
        cos = np.concatenate(pooled)
        out[-1] = len(cos), cos.mean()
    return out


def _sharing_pairs(triples: np.ndarray, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_pairs`` item pairs drawn uniformly from the (item, item, shared tail) triples of ``triples``:
    a tail by its number of item pairs, then two distinct items of it (no ``items x items`` product)."""
    triples = np.unique(triples[:, [2, 0]], axis=0)                         # (tail, item), sorted by tail
    tails, start, size = np.unique(triples[:, 0], return_index=True, return_counts=True)
    weight = size * (size - 1) / 2.0
    if weight.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = int(min(max_pairs, weight.sum()))
    tail = rng.choice(len(tails), size=n, p=weight / weight.sum())
    first = rng.integers(size[tail])
    second = (first + 1 + rng.integers(size[tail] - 1)) % size[tail]       # another item of the same tail
    return triples[start[tail] + first, 1], triples[start[tail] + second, 1]


def verdict(table: pd.DataFrame, permutations: int, level: float = 0.05) -> str:
    """One line on the pooled row of :func:`kg_alignment`: signal, no signal, or too few draws to tell."""
    pooled = table.iloc[-1]
    if 1 / (1 + permutations) > level:
        return f"too few permutations for a test at the {level:.0%} level (use {round(1 / level) - 1} or more)"
    if pooled["p"] <= level:
        return "items that share a KG entity share more users than under random links"
    return ("items that share a KG entity share NO more users than under random links: the item -> entity links "
            "may be wrong (MovieLens: see dglmm data relink-movielens), and a KG-aware model cannot gain from this KG")
