"""The options of a contrastive (InfoNCE) term, declared once for every model that has one.

:func:`contrastive_options` makes the option group a model's config inherits, one name per idea:

=================  ==========================================================================================
``cl_weight``      the term's weight in the loss
``cl_temperature`` the InfoNCE temperature ``tau``
``cl_critic``      the logits' similarity: ``cosine`` (normalised rows) or ``dot`` (raw inner products)
``cl_items``       the rows the InfoNCE runs over: ``all`` items every batch or the ``batch``'s items
``cl_max_items``   at most this many of those rows, sampled per batch (0: all of them, ``O(rows^2 d)``)
``cl_chunk_size``  rows per chunk beyond which the ``rows x rows`` logits are never formed at once
=================  ==========================================================================================

A model states only its paper's reading: the defaults, the equation each option is, the search space and the
condition under which the term exists::

    @dataclasses.dataclass
    class MICROConfig(contrastive_options(weight=Reading(0.03, "beta_C of eq. 19", LogUniform(1e-3, 1e-1)),
                                          active_when={"variant": ("micro",)}), ModelConfig):

The group comes before ``ModelConfig`` in the bases so that the options list after the shared ones.
``renamed_from`` maps a group name to a model's former option name (kept working with a deprecation warning).
:meth:`rows` is the row selection of :func:`dglmm.nn.losses.contrastive_items` under these options.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from dglmm.nn.losses import CONTRASTIVE_ITEMS, CRITICS, contrastive_items
from dglmm.options import Space, option


@dataclasses.dataclass(frozen=True)
class Reading:
    """A model's reading of one group option: its default, what it is in the paper, its search space."""

    default: Any
    help: str = ""
    space: Space | None = None


#: name -> (type, the group's help, the group's default, declared range or choices)
GROUP: dict[str, tuple[type, str, Any, dict[str, Any]]] = {
    "weight": (float, "weight of the contrastive term", None, dict(low=0.0)),
    "temperature": (float, "InfoNCE temperature tau", 0.5, dict(low=0.0, low_open=True)),
    "critic": (str, "InfoNCE logits: 'cosine' similarity or raw 'dot' product", "cosine", dict(choices=CRITICS)),
    "items": (str, "InfoNCE over 'all' items every batch or the 'batch' items", "all",
              dict(choices=CONTRASTIVE_ITEMS, reading=True)),
    "max_items": (int, "InfoNCE over a random subset of at most this many of those items per batch; 0: all of "
                       "them (O(rows^2 d) per batch)", 1024, dict(low=0)),
    "chunk_size": (int, "InfoNCE rows per chunk beyond this many rows (memory O(chunk x rows))", 1024, dict(low=1)),
}


class ContrastiveOptions:
    """Methods of every contrastive option group (the fields are made by :func:`contrastive_options`)."""

    cl_items: str
    cl_max_items: int

    def rows(self, n_items: int, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor | None:
        """The items this batch's InfoNCE runs over (None: all of them)."""
        return contrastive_items(n_items, pos, neg, self.cl_items, self.cl_max_items)


def contrastive_options(*, active_when: dict[str, Any] | None = None, renamed_from: dict[str, str] | None = None,
                        **readings: Reading | Any) -> type:
    """The dataclass of the ``cl_*`` options with a model's ``readings`` (a :class:`Reading` or a bare default)
    for any of :data:`GROUP`'s names; ``active_when`` applies to the whole group."""
    unknown = set(readings) - set(GROUP)
    if unknown:
        raise TypeError(f"not contrastive options: {sorted(unknown)}")
    fields = []
    for name, (kind, help, default, declared) in GROUP.items():
        reading = readings.get(name, Reading(default))
        reading = reading if isinstance(reading, Reading) else Reading(reading)
        if reading.default is None:
            raise TypeError(f"contrastive_options needs a default for {name}")
        text = f"{help}: {reading.help}" if reading.help else help
        fields.append((f"cl_{name}", kind, option(reading.default, text, space=reading.space, active_when=active_when,
                                                  renamed_from=(renamed_from or {}).get(name), **declared)))
    return dataclasses.make_dataclass("ContrastiveGroup", fields, bases=(ContrastiveOptions,))
