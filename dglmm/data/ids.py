"""A dataset's own user and item ids, both ways: :class:`IdMap` (``Dataset.id_map("user")``).

Readers re-index users and items densely (``0..n-1``).  RecBole files name them by tokens, which the reader
keeps in dense-id order; MMRec, LATTICE and KGAT files use integer ids that already are the dense ids.
Recommendations and exports are written in the original ids, and user ids given by a person are read in them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from dglmm.errors import InputError


class IdMap:
    """Original ids <-> dense ids of one kind (``"user"`` or ``"item"``) of a dataset of ``size`` of them.

    ``tokens``: the original id of every dense id (strings), or None when the original ids are the integers
    ``0..size-1``.

    >>> m = IdMap("user", 3, np.array(["ann", "bob", "cy"]))
    >>> m.encode(["cy", "ann"]).tolist(), m.decode(np.array([1])).tolist()
    ([2, 0], ['bob'])
    """

    def __init__(self, kind: str, size: int, tokens: np.ndarray | None = None, dataset: str = "") -> None:
        self.kind, self.size, self.dataset = kind, int(size), dataset
        self.tokens = None if tokens is None else np.asarray(tokens, dtype=str)
        self._index = None if self.tokens is None else pd.Index(self.tokens)

    def decode(self, dense: np.ndarray) -> np.ndarray:
        """Original ids of dense ids (strings for tokens, int64 otherwise)."""
        dense = np.asarray(dense, dtype=np.int64)
        return dense.copy() if self.tokens is None else self.tokens[dense]

    def all(self) -> np.ndarray:
        """The original id of every dense id, in dense order."""
        return self.decode(np.arange(self.size))

    def encode(self, ids: Iterable) -> np.ndarray:
        """Dense ids of original ids (given as strings or numbers); ids the dataset does not have: one
        :class:`InputError` naming the first few."""
        text = np.array([str(i).strip() for i in ids], dtype=str)
        if self._index is not None:
            dense = self._index.get_indexer(text).astype(np.int64)
        else:
            dense = np.full(len(text), -1, dtype=np.int64)
            digits = np.char.isdigit(text)
            values = np.array([int(t) if ok and len(t) < 19 else -1 for t, ok in zip(text, digits, strict=True)],
                              dtype=np.int64)
            dense[(values >= 0) & (values < self.size)] = values[(values >= 0) & (values < self.size)]
        unknown = text[dense < 0]
        if len(unknown):
            shown = ", ".join(repr(str(u)) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            example = self.all()[:3]
            raise InputError(f"{len(unknown)} unknown {self.kind} id(s) of {len(text)}: {shown} (dataset "
                             f"{self.dataset or '?'} has {self.size} {self.kind}s with ids such as "
                             f"{', '.join(str(e) for e in example)})")
        return dense
