"""The in-memory dataset every reader produces and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dglmm.data.errors import DataError
from dglmm.data.ids import IdMap
from dglmm.errors import InputError

SPLITS = ("train", "valid", "test")


def _empty_pairs() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.int64)


@dataclass
class Dataset:
    """Users, items and knowledge-graph entities with train/valid/test interactions.

    Id spaces:
      * users ``0..n_users-1``, items ``0..n_items-1``;
      * knowledge-graph nodes use the KGAT convention: ids ``0..n_items-1`` are the items themselves and
        ids ``n_items..n_items+n_entities-1`` are the entities that are not items.

    Attributes:
        train, valid, test: int64 arrays ``[n, 2]`` of (user, item) pairs, without duplicates.
        modalities: ``{name: float32 [n_items, d]}``, row ``i`` describes item ``i``.
        kg: int64 ``[n, 3]`` (head, relation, tail) in the KG id space above.
        relation_names: name of relation ``r`` at position ``r``.
        item_text: optional text per item (e.g. RecBole title, year and genres), for text features.
        user_tokens, item_tokens: the dataset's own id of every user / item, in dense-id order, when the
            files name them by tokens (RecBole); None when the files' integer ids are the dense ids
            (MMRec, LATTICE, KGAT, synthetic).  :meth:`id_map` converts both ways.

    An item lacks a modality when its feature row is all zeros (:meth:`feature_mask`): items without text
    get such a row from ``dglmm features text``, and the robustness option ``data.drop_features`` writes them.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray = field(default_factory=_empty_pairs)
    valid: np.ndarray = field(default_factory=_empty_pairs)
    test: np.ndarray = field(default_factory=_empty_pairs)
    modalities: dict[str, np.ndarray] = field(default_factory=dict)
    n_entities: int = 0
    kg: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    relation_names: list[str] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    item_text: list[str] | None = None
    user_tokens: np.ndarray | None = None
    item_tokens: np.ndarray | None = None

    def id_map(self, kind: str) -> IdMap:
        """Original ids <-> dense ids of the ``"user"`` or ``"item"`` kind."""
        if kind not in ("user", "item"):
            raise ValueError(f"kind must be 'user' or 'item', got {kind!r}")
        size = self.n_users if kind == "user" else self.n_items
        return IdMap(kind, size, self.user_tokens if kind == "user" else self.item_tokens, self.name)

    def feature_mask(self, modality: str) -> np.ndarray:
        """Boolean ``[n_items]``: True where the item has features of ``modality`` (a row that is not all 0)."""
        return np.any(self.modalities[modality] != 0, axis=1)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    @property
    def n_relations(self) -> int:
        return len(self.relation_names)

    @property
    def n_interactions(self) -> int:
        return sum(len(self.split(s)) for s in SPLITS)

    def item_train_counts(self) -> np.ndarray:
        """Number of training interactions of every item (cold items have 0)."""
        return np.bincount(self.train[:, 1], minlength=self.n_items)

    def user_train_counts(self) -> np.ndarray:
        return np.bincount(self.train[:, 0], minlength=self.n_users)

    def cold_items(self) -> np.ndarray:
        """Items without any training interaction."""
        return np.flatnonzero(self.item_train_counts() == 0)

    def users_without_train(self) -> np.ndarray:
        return np.flatnonzero(self.user_train_counts() == 0)

    def entity_items(self) -> np.ndarray:
        """Items that occur in at least one KG triple."""
        if len(self.kg) == 0:
            return np.zeros(0, dtype=np.int64)
        nodes = np.concatenate([self.kg[:, 0], self.kg[:, 2]])
        return np.unique(nodes[nodes < self.n_items])

    def summary(self) -> dict:
        """Counts a person can read; :func:`format_summary` prints them."""
        sizes = {s: int(len(self.split(s))) for s in SPLITS}
        total = sum(sizes.values())
        info = {
            "name": self.name,
            "source": self.source,
            "users": self.n_users,
            "items": self.n_items,
            "entities": self.n_entities,
            "interactions": total,
            "train": sizes["train"],
            "valid": sizes["valid"],
            "test": sizes["test"],
            "density": total / max(1, self.n_users * self.n_items),
            "modalities": {m: int(f.shape[1]) for m, f in self.modalities.items()},
            "kg_triples": int(len(self.kg)),
            "kg_relations": self.n_relations,
            "kg_items": int(len(self.entity_items())),
            "cold_items": int(len(self.cold_items())),
            "users_without_train": int(len(self.users_without_train())),
        }
        return info

    def validate(self) -> None:
        """Internal consistency: ids in range, feature rows match items, finite features."""
        for s in SPLITS:
            pairs = self.split(s)
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise DataError(self.source, f"{s} split must be [n, 2] (user, item) pairs")
            if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= self.n_users
                               or pairs[:, 1].max() >= self.n_items):
                raise DataError(self.source, f"{s} split has ids out of range")
        for m, feat in self.modalities.items():
            if feat.shape[0] != self.n_items:
                raise DataError(self.source, f"modality {m!r} has {feat.shape[0]} rows for {self.n_items} items")
            if not np.isfinite(feat).all():
                raise DataError(self.source, f"modality {m!r} has NaN or inf values")
        for kind, tokens, size in (("user", self.user_tokens, self.n_users), ("item", self.item_tokens, self.n_items)):
            if tokens is not None and len(tokens) != size:
                raise DataError(self.source, f"{kind}_tokens has {len(tokens)} entries for {size} {kind}s")
        if self.item_text is not None and len(self.item_text) != self.n_items:
            raise DataError(self.source, f"item_text has {len(self.item_text)} entries for {self.n_items} items")
        if len(self.kg):
            n_nodes = self.n_items + self.n_entities
            if self.kg.min() < 0 or max(self.kg[:, 0].max(), self.kg[:, 2].max()) >= n_nodes:
                raise DataError(self.source, "KG has node ids out of range")
            if self.kg[:, 1].max() >= self.n_relations:
                raise DataError(self.source, "KG has relation ids without a name")


def format_summary(info: dict) -> str:
    """Render :meth:`Dataset.summary` as aligned lines."""
    lines = [
        f"dataset        {info['name']}  ({info['source']})",
        f"users          {info['users']:,}",
        f"items          {info['items']:,}",
        f"entities       {info['entities']:,} (non-item KG entities)",
        f"interactions   {info['interactions']:,}  train {info['train']:,} / valid {info['valid']:,}"
        f" / test {info['test']:,}",
        f"density        {info['density']:.5f}",
        "modalities     " + (", ".join(f"{m} ({d}-d)" for m, d in info["modalities"].items()) or "none"),
        f"kg             {info['kg_triples']:,} triples, {info['kg_relations']} relations,"
        f" {info['kg_items']:,} items linked",
        f"cold items     {info['cold_items']:,} (no training interaction)",
        f"users w/o train {info['users_without_train']:,} (left out of evaluation)",
    ]
    return "\n".join(lines)
