"""RecBole atomic files: ``<name>.inter`` and optional ``.item``, ``.kg``, ``.link`` with ``name:type`` headers."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError, DataWarning
from dglmm.data.formats.common import (
    find_inter_file,
    finish,
    load_features,
    natural_order,
    splits_from_labels,
)
from dglmm.data.splits import split_labels
from dglmm.data.validate import (
    drop_duplicate_rows,
    parse_float_column,
    parse_int_column,
    read_table,
    require_columns,
    unique_pair_rows,
)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SPLIT_ORDERS = ("random", "time")


def read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """An atomic file with its columns renamed to the field names, and ``{field: type}``."""
    table = read_table(path)
    fields: dict[str, str] = {}
    for column in table.columns:
        name, sep, kind = str(column).partition(":")
        if not sep or kind not in FIELD_TYPES:
            raise DataError(path, f"header column {column!r} is not name:type with type in {', '.join(FIELD_TYPES)}")
        if name in fields:
            raise DataError(path, f"field {name!r} appears twice in the header")
        fields[name] = kind
    table.columns = list(fields)
    return table, fields


def _tokens(table: pd.DataFrame, field: str, path: Path) -> np.ndarray:
    values = table[field].astype(str).str.strip()
    empty = (values == "").to_numpy()
    if empty.any():
        raise DataError(path, f"line {table.index[int(np.argmax(empty))]}: empty {field}")
    return values.to_numpy(dtype=str)


def read_recbole(path: str | Path, min_rating: float | None = None, split_order: str = "random",
                 ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2024,
                 modalities: Iterable[str] | None = None) -> Dataset:
    """Read RecBole atomic files from their directory or the ``.inter`` file.

    Fields are found by name (``user_id``, ``item_id``, optional ``rating``, ``timestamp``), in any column
    order. Ratings become implicit feedback: all rows are kept unless ``min_rating`` is given. Users and
    items are re-indexed densely by their token, numerically when all tokens are integers (ml-100k item
    "1" is item 0), over every row of the file, so ids do not depend on ``min_rating``; the tokens are kept
    (``user_tokens``, ``item_tokens``) so that results speak the file's ids.
    Split: an ``x_label`` field (0/1/2) is used when present; otherwise a seeded per-user split with
    ``ratios`` (default 8:1:1), ``split_order="random"`` (default, RecBole's RO ordering) or ``"time"``
    (latest interactions tested); see :func:`dglmm.data.splits.split_sizes` for the per-user rule.
    ``.item``: its token fields become ``item_text`` (values joined by ". "). ``.kg``/``.link``: see
    :func:`read_recbole_kg`. ``<modality>_feat.npy`` rows must follow the re-indexed item order.
    """
    if split_order not in SPLIT_ORDERS:
        raise ValueError(f"split_order must be one of {SPLIT_ORDERS}, got {split_order!r}")
    inter = find_inter_file(path)
    table, fields = read_atomic(inter)
    require_columns(fields, ("user_id", "item_id"), inter)
    user_vocab, users = _index(_tokens(table, "user_id", inter))
    item_vocab, items = _index(_tokens(table, "item_id", inter))
    pairs = np.stack([users, items], axis=1)
    labels, order_key = _split_inputs(table, fields, inter, split_order)
    rows = np.flatnonzero(_rating_filter(table, fields, inter, min_rating))
    rows = rows[unique_pair_rows(pairs[rows], labels[rows], inter)]
    pairs, labels = pairs[rows], labels[rows]
    if "x_label" not in fields:
        labels = split_labels(pairs[:, 0], ratios, seed, None if order_key is None else order_key[rows])
    n_items = len(item_vocab)
    feats, _ = load_features(inter.parent, n_items, f"{inter.name} has {n_items} distinct items", modalities)
    kg, n_entities, relation_names, notes = read_recbole_kg(inter, item_vocab)
    split = "x_label column" if "x_label" in fields else f"per-user {split_order} split {ratios}, seed {seed}"
    dataset = Dataset(name=inter.stem, n_users=len(user_vocab), n_items=n_items, modalities=feats,
                      n_entities=n_entities, kg=kg, relation_names=relation_names, source=str(inter),
                      item_text=_item_text(inter, item_vocab), notes=[f"split: {split}", *notes],
                      user_tokens=user_vocab, item_tokens=item_vocab,
                      **splits_from_labels(pairs, labels))
    return finish(dataset)


def _index(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary in natural order and the dense id of every token."""
    vocab = natural_order(tokens)
    return vocab, pd.Index(vocab).get_indexer(tokens).astype(np.int64)


def _split_inputs(table: pd.DataFrame, fields: dict[str, str], path: Path,
                  split_order: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Given split labels (``x_label``) or zeros, and the timestamps when splitting by time."""
    if "x_label" in fields:
        labels = parse_int_column(table["x_label"], path, "x_label")
        if len(labels) and labels.max() > 2:
            raise DataError(path, f"line {table.index[int(np.argmax(labels))]}: x_label {int(labels.max())} "
                                  "is not 0, 1 or 2 (train/valid/test)")
        return labels.astype(np.int8), None
    labels = np.zeros(len(table), dtype=np.int8)
    if split_order != "time":
        return labels, None
    require_columns(fields, ("timestamp",), path)
    return labels, parse_float_column(table["timestamp"], path, "timestamp")


def _rating_filter(table: pd.DataFrame, fields: dict[str, str], path: Path,
                   min_rating: float | None) -> np.ndarray:
    """Mask of the rows kept as implicit feedback (all rows without ``min_rating``)."""
    if min_rating is None:
        return np.ones(len(table), dtype=bool)
    require_columns(fields, ("rating",), path)
    return parse_float_column(table["rating"], path, "rating") >= min_rating


def _item_text(inter: Path, item_vocab: np.ndarray) -> list[str] | None:
    """Text of every item from the token fields of ``<name>.item`` (``""`` for items it does not list)."""
    path = inter.with_suffix(".item")
    if not path.exists():
        return None
    table, fields = read_atomic(path)
    require_columns(fields, ("item_id",), path)
    text_fields = [f for f, kind in fields.items() if f != "item_id" and kind.startswith("token")]
    values = table[text_fields].astype(str).to_numpy()
    ids = pd.Index(item_vocab).get_indexer(_tokens(table, "item_id", path))
    first = (ids >= 0) & ~pd.Series(ids).duplicated().to_numpy()
    out = [""] * len(item_vocab)
    for i, row in zip(ids[first], values[first], strict=True):
        out[i] = ". ".join(v.strip() for v in row if v.strip())
    return out


def read_recbole_kg(inter: Path, item_vocab: np.ndarray) -> tuple[np.ndarray, int, list[str], list[str]]:
    """KG triples, non-item entity count, relation names and notes from ``<name>.kg`` / ``<name>.link``.

    Entities linked to an item by ``.link`` take that item's id; the other entities get ids ``n_items, ...``
    in natural token order, relations are numbered in natural order and named by their token. A link to an
    item token that is not in the ``.inter`` file, or a link that is not one-to-one, is a DataError.
    Duplicate triples are dropped with a warning.
    """
    path = inter.with_suffix(".kg")
    if not path.exists():
        return np.zeros((0, 3), dtype=np.int64), 0, [], []
    table, fields = read_atomic(path)
    require_columns(fields, ("head_id", "relation_id", "tail_id"), path)
    heads, tails = _tokens(table, "head_id", path), _tokens(table, "tail_id", path)
    link_entities, link_items, notes = _read_link(inter, item_vocab)
    nodes = np.concatenate([heads, tails])
    position = pd.Index(link_entities).get_indexer(nodes)
    linked = position >= 0
    node_ids = np.empty(len(nodes), dtype=np.int64)
    node_ids[linked] = link_items[position[linked]]
    other_vocab, other_ids = _index(nodes[~linked])
    node_ids[~linked] = len(item_vocab) + other_ids
    relation_vocab, relations = _index(_tokens(table, "relation_id", path))
    kg = np.stack([node_ids[: len(heads)], relations, node_ids[len(heads):]], axis=1)
    kg = drop_duplicate_rows(kg, path, "KG triple(s)")
    return kg, len(other_vocab), [str(r) for r in relation_vocab], notes


def _read_link(inter: Path, item_vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Entity tokens of ``<name>.link`` and the item id each one stands for (a one-to-one map)."""
    path = inter.with_suffix(".link")
    if not path.exists():
        return np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64), [f"no {path.name}: no KG entity is an item"]
    table, fields = read_atomic(path)
    require_columns(fields, ("item_id", "entity_id"), path)
    items, entities = _tokens(table, "item_id", path), _tokens(table, "entity_id", path)
    ids = pd.Index(item_vocab).get_indexer(items)
    if (ids < 0).any():
        bad = int(np.argmax(ids < 0))
        raise DataError(path, f"line {table.index[bad]}: item_id {items[bad]!r} is not an item of {inter.name}")
    links = pd.DataFrame({"item": ids, "entity": entities}, index=table.index)
    repeated = links.duplicated().to_numpy()
    if repeated.any():
        warnings.warn(f"{path}: dropped {int(repeated.sum())} duplicate link(s)", DataWarning, stacklevel=4)
    links = links[~repeated]
    for column, other in (("item", "entity"), ("entity", "item")):
        clash = links[column].duplicated().to_numpy()
        if clash.any():
            line = links.index[int(np.argmax(clash))]
            raise DataError(path, f"line {line}: {column} linked to more than one {other}")
    return links["entity"].to_numpy(dtype=str), links["item"].to_numpy(dtype=np.int64), []
