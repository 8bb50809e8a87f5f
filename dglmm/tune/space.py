"""The search space of one study: the spaces declared beside the options, narrowed or fixed by ``--set``.

Every option that declares a ``space`` (:func:`dglmm.options.option`) is searched unless the user fixes it.
``--set section.key=VALUE`` fixes a value, ``--set section.key=[a, b, c]`` searches those values (categorical;
each is checked like a grid point) and ``--set section.key=LOW..HIGH`` searches that range (log-uniform when
the declared space is, an integer range for an integer option, uniform otherwise).  Sampling is define-by-run:
an option whose ``active_when`` condition does not hold under the values drawn (or fixed) so far is not sampled
in that trial, so Optuna records only the options that mattered.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from dglmm.config import parse_override, parse_value, sweep_axes
from dglmm.errors import InputError
from dglmm.options import Categorical, IntRange, LogUniform, OptionError, Space, Uniform, build, is_active


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched option: ``section.name``, its space, its activity condition and where the space came from
    (``declared`` beside the option, ``set`` by a range on the command line, ``grid`` from a list value)."""

    section: str
    name: str
    space: Space
    active_when: dict[str, tuple[Any, ...]] | None = None
    origin: str = "declared"

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def condition_keys(self) -> list[str]:
        """The options the condition reads, as ``section.name``."""
        return [k if "." in k else f"{self.section}.{k}" for k in (self.active_when or {})]

    def __str__(self) -> str:
        when = "".join(f" when {k} in {list(v)}" for k, v in (self.active_when or {}).items())
        return f"{self.key}: {self.space}{when}"


def split_ranges(overrides: list[str], sections: dict[str, type]) -> tuple[list[str], dict[tuple[str, str], Space]]:
    """Separate the ``key=LOW..HIGH`` overrides (returned as spaces, checked) from the others."""
    plain, ranges = [], {}
    for text in overrides:
        raw = text.split("=", 1)[1] if "=" in text else ""
        if ".." not in raw or raw.lstrip().startswith("["):
            plain.append(text)
            continue
        section, name, _ = parse_override(text, sections)
        ranges[(section, name)] = _range_space(text, section, name, raw, sections)
    return plain, ranges


def _range_space(text: str, section: str, name: str, raw: str, sections: dict[str, type]) -> Space:
    if section not in sections:
        raise InputError(f"--set {text}: unknown config section {section!r}")
    cls = sections[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise OptionError(f"--set {text}: unknown {section} option {name!r}; known: {', '.join(sorted(fields))}")
    hint = typing.get_type_hints(cls)[name]
    if hint not in (int, float):
        raise InputError(f"--set {text}: a LOW..HIGH range needs a numeric option; {section}.{name} is not one")
    parts = raw.split("..")
    bounds = [parse_value(p) for p in parts] if len(parts) == 2 else []
    if len(bounds) != 2 or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
        raise InputError(f"--set {text}: a range is LOW..HIGH with two numbers, e.g. {section}.{name}=1e-4..1e-2")
    low, high = bounds
    if not low < high:
        raise InputError(f"--set {text}: the range's low end must be below its high end")
    for value in (low, high):
        build(cls, {name: value}, section)  # each end must be a valid value of the option
    declared = fields[name].metadata.get("space")
    if hint is int:
        if low != int(low) or high != int(high):
            raise InputError(f"--set {text}: {section}.{name} is an integer option; give integer ends")
        return IntRange(int(low), int(high))
    if isinstance(declared, LogUniform):
        if low <= 0:
            raise InputError(f"--set {text}: {section}.{name} is searched log-uniformly; the low end must be > 0")
        return LogUniform(float(low), float(high))
    return Uniform(float(low), float(high))


def search_space(config: dict, sections: dict[str, type], set_keys: set[tuple[str, str]],
                 ranges: dict[tuple[str, str], Space]) -> list[Dimension]:
    """Every searched option of a resolved ``config``: the grid axes (list values), the ``ranges`` and every
    declared space not fixed by the user (``set_keys``: the options given a value with ``--set``)."""
    dims: dict[tuple[str, str], Dimension] = {}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            meta, where = f.metadata, (section, f.name)
            condition = meta.get("active_when")
            if where in ranges:
                dims[where] = Dimension(section, f.name, ranges[where], condition, "set")
            elif meta.get("space") is not None and where not in set_keys:
                dims[where] = Dimension(section, f.name, meta["space"], condition, "declared")
    for (section, name), values in sweep_axes(config, sections).items():
        condition = {f.name: f for f in dataclasses.fields(sections[section])}[name].metadata.get("active_when")
        if any(isinstance(v, list) for v in values):
            raise InputError(f"{section}.{name}: dglmm tune searches scalar options; give this list option one "
                             "value")
        choices = tuple(values)
        dims[(section, name)] = Dimension(section, name, Categorical(choices), condition, "grid")
    _check_conditions(list(dims.values()), sections)
    return list(dims.values())


def _check_conditions(dims: list[Dimension], sections: dict[str, type]) -> None:
    for dim in dims:
        for key in dim.condition_keys():
            section, name = key.split(".", 1)
            if section not in sections or name not in {f.name for f in dataclasses.fields(sections[section])}:
                raise OptionError(f"{dim.key}: its active_when names an unknown option {key!r}")


def default_value(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def sample(trial: Any, config: dict, dims: list[Dimension], sections: dict[str, type]) -> dict:
    """A copy of ``config`` with every active dimension drawn from ``trial`` (``suggest_*``), conditions first:
    a dimension is decided after the dimensions its condition reads."""
    config = copy.deepcopy(config)
    for dim in dims:
        if dim.origin == "grid":
            config[dim.section].pop(dim.name, None)   # the list is the space, not a value

    def lookup(section: str) -> Any:
        def value(key: str) -> Any:
            s, n = key.split(".", 1) if "." in key else (section, key)
            current = config.get(s, {}).get(n, default_value(sections[s], n))
            return tuple(current) if isinstance(current, list) else current
        return value

    pending = list(dims)
    while pending:
        waiting = {d.key for d in pending}
        ready = [d for d in pending if not set(d.condition_keys()) & waiting]
        if not ready:
            raise OptionError("active_when conditions form a cycle: " + ", ".join(sorted(waiting)))
        for dim in ready:
            pending.remove(dim)
            if is_active(dim.active_when, lookup(dim.section)):
                value = dim.space.suggest(trial, dim.key)
                config.setdefault(dim.section, {})[dim.name] = value
    for section, values in config.items():
        build(sections[section], values, section)
    return config
