"""The names of the heterograph's node and edge types, in one place: what the builder creates and what every
layer and model reads.

Nodes: ``user``, ``item`` and (with a knowledge graph) ``entity``.  Relations: ``(user, interact, item)`` and its
reverse ``(item, interacted_by, user)`` carrying the normalised weight ``w``; ``(item, similar_<m>, item)``, the
kNN graph of modality ``m`` (weight ``w``); the KG relations and their ``rev_`` reverses; item features are item
node data ``feat_<m>``.
"""

from __future__ import annotations

USER, ITEM, ENTITY = "user", "item", "entity"
INTERACT, INTERACTED_BY = "interact", "interacted_by"
INTERACT_ETYPE = (USER, INTERACT, ITEM)
INTERACTED_BY_ETYPE = (ITEM, INTERACTED_BY, USER)
REVERSE_PREFIX = "rev_"

CanonicalEtype = tuple[str, str, str]


def similar_etype(modality: str) -> CanonicalEtype:
    """The kNN edge type of ``modality``: ``(item, similar_<modality>, item)``."""
    return (ITEM, f"similar_{modality}", ITEM)
