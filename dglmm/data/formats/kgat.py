"""KGAT / KGIN layout: ``train.txt`` / ``test.txt`` (``uid iid iid ...``) and ``kg_final.txt`` (``h r t``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.data.formats.common import finish, load_features, splits_from_labels
from dglmm.data.splits import split_labels
from dglmm.data.validate import (
    check_id_span,
    check_ids_below,
    drop_duplicate_pairs,
    drop_duplicate_rows,
    int_lines,
    require_dir,
    require_file,
)


def read_user_lines(path: Path) -> tuple[np.ndarray, int]:
    """(user, item) pairs of a ``uid iid iid ...`` file and the number of users it names (max uid + 1).

    A user line may list no item: that user still counts.
    """
    users: list[int] = []
    items: list[int] = []
    n_users = 0
    for _, values in int_lines(require_file(path)):
        users.extend([values[0]] * (len(values) - 1))
        items.extend(values[1:])
        n_users = max(n_users, values[0] + 1)
    return np.array([users, items], dtype=np.int64).T.reshape(-1, 2), n_users


def read_triples(path: Path) -> np.ndarray:
    """``head relation tail`` integer triples, one per line; fast path with pandas, exact errors by scan."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="c")
        triples = table.to_numpy().astype(np.int64)
        if triples.shape[1] == 3 and (len(triples) == 0 or triples.min() >= 0):
            return triples
    except pd.errors.EmptyDataError:
        return np.zeros((0, 3), dtype=np.int64)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, TypeError):
        pass
    rows = []
    for number, values in int_lines(path):
        if len(values) != 3:
            raise DataError(path, f"line {number}: expected 3 integers (head relation tail), got {len(values)}")
        rows.append(values)
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _list_ids(path: Path) -> dict[int, str]:
    """``{remap_id: original name}`` from a KGAT ``*_list.txt`` (header ``org_id remap_id ...``)."""
    names: dict[int, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split()
            if len(tokens) < 2 or (number == 1 and not tokens[1].isdigit()):
                continue
            if not tokens[1].isdigit():
                raise DataError(path, f"line {number}: remap_id {tokens[1]!r} is not an integer")
            names[int(tokens[1])] = tokens[0]
    return names


def _relation_names(directory: Path, n_relations: int) -> list[str]:
    path = directory / "relation_list.txt"
    if not path.exists():
        return [f"r{r}" for r in range(n_relations)]
    names = _list_ids(path)
    missing = [r for r in range(n_relations) if r not in names]
    if missing:
        raise DataError(path, f"no name for relation id {missing[0]} used in kg_final.txt")
    return [names[r] for r in range(max(n_relations, len(names)))]


def _list_size(path: Path) -> int:
    return len(_list_ids(path)) if path.exists() else 0


def _carve_valid(train: np.ndarray, valid_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < valid_ratio < 1:
        raise ValueError(f"valid_ratio must be in (0, 1), got {valid_ratio}")
    labels = split_labels(train[:, 0], (1 - valid_ratio, valid_ratio, 0.0), seed)
    return train[labels == 0], train[labels == 1]


def read_kgat(directory: str | Path, valid_ratio: float = 0.1, seed: int = 2024,
              modalities: Iterable[str] | None = None) -> Dataset:
    """Read the KGAT layout; the validation split is carved out of ``train.txt``.

    KGAT has no validation split (its code early-stops on test). Here, per user, ``max(1, round(valid_ratio
    * n))`` of the ``n`` training items move to validation at random (seeded); users with a single training
    item keep it in train. Item ids are KG entity ids ``0..n_items-1`` and larger KG ids are the non-item
    entities, as in :class:`Dataset`. ``n_items`` / ``n_users`` are max id + 1, or the sizes of
    ``item_list.txt`` / ``user_list.txt`` when larger. Relations are named ``r0, r1, ...`` or from
    ``relation_list.txt``; reverse relations are not added (the graph builder does that).
    ``kg_final.txt`` is optional. Duplicate interactions and triples are dropped with a warning.
    """
    directory = require_dir(directory)
    train_file, test_file = directory / "train.txt", directory / "test.txt"
    (train, train_users), (test, test_users) = read_user_lines(train_file), read_user_lines(test_file)
    n_rows = len(train) + len(test)
    for part, users, path in ((train, train_users, train_file), (test, test_users, test_file)):
        check_id_span(np.array([users - 1]), n_rows, path, "user id")
        check_id_span(part[:, 1], n_rows, path, "item id")
    pairs = np.concatenate([train, test])
    labels = np.repeat(np.array([0, 2], dtype=np.int8), [len(train), len(test)])
    pairs, labels = drop_duplicate_pairs(pairs, labels, directory)
    if len(pairs[labels == 0]) == 0:
        raise DataError(train_file, "the train split is empty")
    train, valid = _carve_valid(pairs[labels == 0], valid_ratio, seed)
    pairs = np.concatenate([train, valid, pairs[labels == 2]])
    sizes = [len(train), len(valid), len(pairs) - len(train) - len(valid)]
    labels = np.repeat(np.array([0, 1, 2], dtype=np.int8), sizes)
    n_users = max(train_users, test_users, _list_size(directory / "user_list.txt"))
    n_items = max(int(pairs[:, 1].max()) + 1 if len(pairs) else 0, _list_size(directory / "item_list.txt"))
    feats, n_items = load_features(directory, n_items, only=modalities)
    kg, n_entities, relation_names = _read_kg(directory, n_items)
    dataset = Dataset(name=directory.name, n_users=n_users, n_items=n_items, modalities=feats,
                      n_entities=n_entities, kg=kg, relation_names=relation_names, source=str(directory),
                      notes=[f"validation carved from train.txt: ratio {valid_ratio}, seed {seed}"],
                      **splits_from_labels(pairs, labels))
    return finish(dataset)


def _read_kg(directory: Path, n_items: int) -> tuple[np.ndarray, int, list[str]]:
    path = directory / "kg_final.txt"
    if not path.exists():
        return np.zeros((0, 3), dtype=np.int64), 0, []
    kg = drop_duplicate_rows(read_triples(path), path, "KG triple(s)")
    check_id_span(np.concatenate([kg[:, 0], kg[:, 2]]), len(kg) + n_items, path, "entity id")
    check_id_span(kg[:, 1], len(kg), path, "relation id")
    n_nodes = int(max(kg[:, 0].max(), kg[:, 2].max())) + 1 if len(kg) else 0
    entity_list = directory / "entity_list.txt"
    if entity_list.exists():
        n_listed = _list_size(entity_list)
        check_ids_below(np.concatenate([kg[:, 0], kg[:, 2]]), max(n_listed, n_items), path, "entity id",
                        f"entity_list.txt lists {n_listed} entities")
        n_nodes = max(n_nodes, n_listed)
    n_relations = int(kg[:, 1].max()) + 1 if len(kg) else 0
    return kg, max(0, n_nodes - n_items), _relation_names(directory, n_relations)
