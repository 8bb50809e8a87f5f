"""Declared options: every config field states its type, its allowed values or range once, and is checked here.

A config section (data, graph, model, train) is a dataclass whose fields are made with :func:`option`::

    lr: float = option(1e-3, "Adam learning rate", low=0.0, low_open=True)
    variant: str = option("micro", "Table 5 variant", choices=("micro", "w/o fusion"))

:func:`build` turns a plain dict (YAML, ``--set``) into the dataclass, coercing YAML's values to the declared
type and raising :class:`OptionError` with one line that names ``section.option`` when a value has the wrong
type, is not one of the choices or is out of range.  There is no other place where option values are checked.
An option whose allowed values depend on another option (``train.metric`` on ``train.ks``) is checked by the
class's ``check_options(self, section)`` method, which :func:`validate` calls after the per-field checks.

An option may also declare its hyper-parameter search ``space`` (:class:`LogUniform`, :class:`Uniform`,
:class:`IntRange`, :class:`Categorical`), used by ``dglmm tune``, and the condition under which it matters at
all, ``active_when={"variant": ("micro",)}`` (option name in the same section, or ``section.name``, mapped to
the values that make this option active, or :class:`Below` for a number; :func:`is_active`)::

    cl_weight: float = option(0.03, "beta_C of eq. 19", low=0.0, space=LogUniform(1e-3, 1e-1),
                              active_when={"variant": ("micro", "official")})
    knn_k: int = option(10, "neighbours of the learned graph", low=1, active_when={"lambda_coeff": Below(1.0)})

An option is inactive when its condition fails or when an option its condition reads is itself inactive
(:func:`inactive_options`).  Setting an inactive option is an error (:func:`dglmm.config.resolve_config`),
``resolved.yaml`` lists the inactive options of a run and a grid trains each effective point once.  An option
renamed for consistency keeps its old name for a release: ``option(..., renamed_from="old")`` accepts the old
key with a one-line deprecation warning (:func:`build`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Iterable
from typing import Any

from dglmm.errors import InputError


class OptionError(InputError):
    """A config value of the wrong type or out of its declared range (one line, names ``section.option``)."""


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A float searched log-uniformly in ``[low, high]``."""

    low: float
    high: float

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def values(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def __str__(self) -> str:
        return f"log-uniform {self.low:g}..{self.high:g}"


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float searched uniformly in ``[low, high]`` (on a grid of ``step`` when given)."""

    low: float
    high: float
    step: float | None = None

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step)

    def values(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def __str__(self) -> str:
        return f"uniform {self.low:g}..{self.high:g}" + (f" step {self.step:g}" if self.step else "")


@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer searched uniformly in ``[low, high]`` (every ``step``; ``log=True``: log-uniformly)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def __str__(self) -> str:
        return (f"int{' log' if self.log else ''} {self.low}..{self.high}"
                + (f" step {self.step}" if self.step != 1 else ""))


@dataclasses.dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (a paper's grid, or the values of a choice option)."""

    choices: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def values(self) -> tuple[Any, ...]:
        return tuple(self.choices)

    def __str__(self) -> str:
        return "{" + ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in self.choices) + "}"


Space = LogUniform | Uniform | IntRange | Categorical

#: upper bounds of sizes no model uses anywhere near (they would only exhaust memory): embedding and hidden sizes,
#: and stacked layers
MAX_DIM = 65536
MAX_LAYERS = 64


@dataclasses.dataclass(frozen=True)
class Below:
    """An ``active_when`` condition on a number: the option is active while that number is ``< bound``."""

    bound: float

    def __contains__(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and value < self.bound

    def __iter__(self) -> typing.Iterator[Below]:  # read like a tuple of allowed values where one is listed
        return iter((self,))

    def __str__(self) -> str:
        return f"< {self.bound:g}"

    __repr__ = __str__


@dataclasses.dataclass(frozen=True)
class Above(Below):
    """An ``active_when`` condition on a number: active while that number is ``> bound`` (a weight > 0)."""

    def __contains__(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and value > self.bound

    def __str__(self) -> str:
        return f"> {self.bound:g}"

    __repr__ = __str__


def option(default: Any, help: str, *, choices: Iterable[Any] | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False,
           space: Space | None = None, active_when: dict[str, Iterable[Any] | Below] | None = None,
           renamed_from: str | None = None, reading: bool = False) -> Any:
    """A dataclass field with its help text, its allowed ``choices`` or its range ``[low, high]``.

    ``low_open=True`` excludes ``low`` itself (e.g. a learning rate must be > 0), ``high_open=True`` excludes
    ``high``.  List and tuple defaults are copied per instance.  ``space``: the option's hyper-parameter search
    space; ``active_when``: ``{other option: values}`` (or ``Below(x)``) under which this option has an effect
    (all must hold); ``renamed_from``: the option's former name, still accepted with a deprecation warning;
    ``reading``: the option chooses between readings of the paper (or between the paper and its official code),
    each of its ``choices`` (or both values of a bool) one (:func:`readings_of`; ``recipes/readings.py`` measures
    each against the default).
    """
    if reading and choices is None and not isinstance(default, bool):
        raise TypeError("a reading option needs choices (or a bool default): its alternatives are its values")
    when = {k: v if isinstance(v, Below) else tuple(v) for k, v in active_when.items()} if active_when else None
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None,
                "low": low, "high": high, "low_open": low_open, "high_open": high_open,
                "space": space, "active_when": when, "renamed_from": renamed_from, "reading": reading}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(cls: type, name: str) -> tuple[Any, ...] | None:
    """The declared choices of option ``name`` of config class ``cls`` (None when free)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("choices")


def readings_of(cls: type) -> dict[str, tuple[Any, ...]]:
    """The reading options of config class ``cls`` (declared ``reading=True``) and the values each can take:
    its choices, or ``(False, True)`` for a bool."""
    return {f.name: f.metadata["choices"] or (False, True)
            for f in dataclasses.fields(cls) if f.metadata.get("reading")}


def space_of(cls: type, name: str) -> Space | None:
    """The declared search space of option ``name`` of config class ``cls`` (None: not searched by default)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("space")


def is_active(condition: dict[str, tuple[Any, ...]] | None, lookup: typing.Callable[[str], Any]) -> bool:
    """Whether an ``active_when`` condition holds; ``lookup(key)`` gives the current value of an option key as
    written in the condition (``name`` of the same section or ``section.name``)."""
    return all(lookup(key) in values for key, values in (condition or {}).items())


def _holds_when(key: str, values: Any) -> str:
    """``'lambda_coeff < 1'``, ``'kg_loss = True'``, ``'variant in micro, official'``."""
    if isinstance(values, Below):
        return f"{key} {values}"
    if len(values) == 1:
        return f"{key} = {values[0]}"
    return f"{key} in {', '.join(map(str, values))}"


def describe_condition(condition: dict[str, Any] | None) -> str:
    """``'variant in micro, official and lambda_coeff < 1'`` ('' without a condition)."""
    return " and ".join(_holds_when(key, values) for key, values in (condition or {}).items())


def describe(meta: typing.Mapping[str, Any]) -> str:
    """``'[search: log-uniform 0.0001..0.01; when variant in micro]'`` for a field's metadata ('' if none)."""
    parts = ["reading"] if meta.get("reading") else []
    parts += [f"search: {meta['space']}"] if meta.get("space") is not None else []
    if meta.get("active_when"):
        parts.append(f"when {describe_condition(meta['active_when'])}")
    return f"[{'; '.join(parts)}]" if parts else ""


def inactive_options(configs: typing.Mapping[str, Any]) -> dict[str, str]:
    """The options that have no effect in a set of section instances (``{"model": MICROConfig(...), ...}``), as
    ``{"section.name": reason}``: an option is inactive when its ``active_when`` condition fails or when an option
    the condition reads is itself inactive (so ``graph_update_every`` follows ``graph_update``)."""
    def key_of(section: str, name: str) -> str:
        return name if "." in name else f"{section}.{name}"

    def value(key: str) -> Any:
        section, name = key.split(".", 1)
        current = getattr(configs[section], name)
        return tuple(current) if isinstance(current, list) else current

    conditions = {f"{section}.{f.name}": (section, f.metadata["active_when"])
                  for section, instance in configs.items() for f in dataclasses.fields(instance)
                  if f.metadata.get("active_when")}
    inactive: dict[str, str] = {}
    changed = True
    while changed:  # to a fixed point: inactivity propagates along the conditions
        changed = False
        for key, (section, condition) in conditions.items():
            if key in inactive:
                continue
            for name, values in condition.items():
                other = key_of(section, name)
                if other.split(".", 1)[0] not in configs:
                    continue
                if other in inactive or value(other) not in values:
                    inactive[key] = f"it applies only when {_holds_when(other, values)} ({other} is " + \
                        (f"{value(other)!r}, itself inactive)" if other in inactive else f"{value(other)!r})")
                    changed = True
                    break
    return inactive


def build(cls: type, values: dict[str, Any], section: str = "model") -> Any:
    """``cls(**values)`` with every value coerced to its declared type and checked; unknown keys rejected."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = renamed(cls, values, section)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise OptionError(f"unknown {section} option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce(value, hints[name], f"{section}.{name}") for name, value in values.items()}
    instance = cls(**kwargs)
    validate(instance, section)
    return instance


def check_size(key: str, value: int, limit: int, what: str, default: int | None = None) -> None:
    """OptionError (one line) when a size option exceeds what the data holds (``limit`` of ``what``): checked
    against the data before anything is allocated.  The option's declared ``default`` is exempt (capped on toy
    data that is smaller than it)."""
    if value > limit and value != default:
        raise OptionError(f"{key}={value} exceeds the number of {what} in the data ({limit})")


def renamed(cls: type, values: dict[str, Any], section: str = "model", warn: bool = True) -> dict[str, Any]:
    """``values`` with every former option name (``renamed_from``) replaced by the current one, each with a
    one-line ``FutureWarning``; giving both names is an :class:`OptionError`."""
    old_names = {f.metadata.get("renamed_from"): f.name for f in dataclasses.fields(cls)
                 if f.metadata.get("renamed_from")}
    if not old_names or not set(values) & set(old_names):
        return values
    out = dict(values)
    for old, new in old_names.items():
        if old not in out:
            continue
        if new in out:
            raise OptionError(f"{section}.{old} is the former name of {section}.{new}; give only {section}.{new}")
        if warn:
            warnings.warn(f"{section}.{old} is deprecated, use {section}.{new}", FutureWarning, stacklevel=2)
        out[new] = out.pop(old)
    return out


def validate(instance: Any, section: str = "model") -> None:
    """Check every field of a config instance against its declared type, choices and range."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        key = f"{section}.{f.name}"
        value = coerce(getattr(instance, f.name), hints[f.name], key)
        meta = f.metadata
        allowed = meta.get("choices")
        if allowed is not None:
            items = value if isinstance(value, list | tuple) else [value]
            bad = [v for v in items if v not in allowed]
            if bad:
                raise OptionError(f"{key} must be one of {', '.join(map(str, allowed))}; got {bad[0]!r}")
        _check_range(value, meta, key)
    check = getattr(instance, "check_options", None)
    if check is not None:
        check(section)


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return
    for v in value if isinstance(value, list | tuple) else [value]:
        if v is None:
            continue
        too_low = low is not None and (v <= low if meta.get("low_open") else v < low)
        too_high = high is not None and (v >= high if meta.get("high_open") else v > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if meta.get('low_open') else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if meta.get('high_open') else '<='} {high:g}"
            if too_low and high in (MAX_DIM, MAX_LAYERS):  # a memory guard is named only when it is exceeded
                hi = ""
            raise OptionError(f"{key} must be {' and '.join(x for x in (lo, hi) if x)}; got {v!r}")


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, ``X | None``, ``list[X]``, ``tuple[X, ...]``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for candidate in options:
            try:
                return coerce(value, candidate, key)
            except OptionError as error:
                errors.append(str(error))
        raise OptionError(errors[0] if len(errors) == 1 else f"{key}: {value!r} has the wrong type")
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise OptionError(f"{key} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    return _scalar(value, hint, key)


def _scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise OptionError(f"{key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise OptionError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise OptionError(f"{key} must be a finite number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise OptionError(f"{key} must be a string, got {value!r}")
    return value
