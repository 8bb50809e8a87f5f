"""MMRec layout: ``<name>.inter`` (userID itemID rating timestamp x_label) plus ``<modality>_feat.npy``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.data.formats.common import find_inter_file, finish, load_features, splits_from_labels
from dglmm.data.validate import (
    check_id_span,
    drop_duplicate_pairs,
    parse_int_column,
    read_table,
    require_columns,
)

MMREC_COLUMNS = ("userID", "itemID", "x_label")


def read_mmrec(path: str | Path, modalities: Iterable[str] | None = None) -> Dataset:
    """Read an MMRec dataset from its directory or its ``.inter`` file.

    ``x_label`` 0/1/2 = train/valid/test; rating and timestamp are optional and ignored. Every
    ``<modality>_feat.npy`` beside the file is loaded (or only ``modalities``) as float32, row i = item i.
    ``n_users`` / ``n_items`` are the max id + 1, and ``n_items`` grows to the feature row count when features
    describe more items (those stay cold items). Duplicate pairs are dropped with a warning.
    """
    inter = find_inter_file(path)
    table = read_table(inter)
    require_columns(table.columns, MMREC_COLUMNS, inter)
    users = parse_int_column(table["userID"], inter, "userID")
    items = parse_int_column(table["itemID"], inter, "itemID")
    labels = parse_int_column(table["x_label"], inter, "x_label")
    check_id_span(users, len(table), inter, "userID", lines=table.index)
    check_id_span(items, len(table), inter, "itemID", lines=table.index)
    if len(labels) and labels.max() > 2:
        line = table.index[int(np.argmax(labels))]
        raise DataError(inter, f"line {line}: x_label {int(labels.max())} is not 0, 1 or 2 (train/valid/test)")
    pairs, labels = drop_duplicate_pairs(np.stack([users, items], axis=1), labels.astype(np.int8), inter)
    n_items = int(items.max()) + 1 if len(items) else 0
    feats, n_items = load_features(inter.parent, n_items, only=modalities)
    dataset = Dataset(name=inter.stem, n_users=int(users.max()) + 1 if len(users) else 0, n_items=n_items,
                      modalities=feats, source=str(inter), **splits_from_labels(pairs, labels))
    return finish(dataset)
