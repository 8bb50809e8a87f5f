"""Layered configuration: overall < dataset < model < user files < command line, with grid sweeps.

A resolved config is a plain dict with four sections, each checked against a dataclass:

* ``data``  -> :class:`DataConfig` (split protocol),
* ``graph`` -> :class:`dglmm.graph.build.GraphConfig`,
* ``model`` -> the model's own ``Config`` dataclass,
* ``train`` -> :class:`dglmm.train.trainer.TrainConfig`.

Overrides are ``section.key=value`` (YAML-parsed value); a bare ``key=value`` is resolved to the one section
that has ``key``.  A list value for a scalar option (or a list of lists for a list option) defines a sweep:
:func:`expand_grid` returns one config per point of the Cartesian product.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("data", "graph", "model", "train")


@dataclasses.dataclass
class DataConfig:
    split: str = dataclasses.field(
        default="given", metadata={"help": "'given' (the dataset's split) or 'cold_start' (MICRO 4.1.3)"})
    cold_frac: float = dataclasses.field(default=0.2, metadata={"help": "share of items made cold"})
    split_seed: int = dataclasses.field(default=2024, metadata={"help": "seed of generated splits"})
    cold_rank: str = dataclasses.field(
        default="cold_items", metadata={"help": "cold start: rank only the split's 'cold_items' or 'all_items'"})


def section_classes(model_name: str) -> dict[str, type]:
    """The dataclass that validates each section for a given model."""
    from dglmm.graph.build import GraphConfig
    from dglmm.models import REGISTRY
    from dglmm.train.trainer import TrainConfig

    if model_name not in REGISTRY:
        raise ValueError(f"unknown model {model_name!r}; known: {', '.join(sorted(REGISTRY))}")
    return {"data": DataConfig, "graph": GraphConfig, "model": REGISTRY[model_name].Config,
            "train": TrainConfig}


def _read_yaml(path: Path | str) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of sections")
    return data


def _packaged(kind: str, name: str) -> dict:
    """A YAML file shipped in ``dglmm/configs`` (empty when there is none)."""
    ref = resources.files("dglmm.configs")
    path = ref / "overall.yaml" if kind == "overall" else ref / kind / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(raw: str) -> Any:
    """YAML value, with the numbers YAML 1.1 leaves as strings (``1e-3``, ``[1e-3, 5e-4]``) made floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, list):
        return [_number(v) for v in value]
    return _number(value)


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_override(text: str, model_name: str) -> tuple[str, str, Any]:
    """``'train.lr=1e-3'`` -> ``('train', 'lr', 0.001)``; a bare key is looked up in every section."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    value = parse_value(raw)
    if "." in key:
        section, name = key.split(".", 1)
        return section, name, value
    owners = [s for s, cls in section_classes(model_name).items()
              if key in {f.name for f in dataclasses.fields(cls)}]
    if len(owners) != 1:
        where = "no section" if not owners else f"sections {owners}"
        raise ValueError(f"option {key!r} is in {where}; write it as section.{key}")
    return owners[0], key, value


def resolve_config(model_name: str, dataset_name: str, files: list[str] = (),  # type: ignore[assignment]
                   overrides: list[str] = ()) -> dict:  # type: ignore[assignment]
    """Merge the layers in priority order and check every key against its section's dataclass."""
    config: dict = {s: {} for s in SECTIONS}
    for layer in (_packaged("overall", ""), _packaged("datasets", dataset_name),
                  _packaged("models", model_name), *(_read_yaml(f) for f in files)):
        config = merge(config, layer)
    for text in overrides:
        section, key, value = parse_override(text, model_name)
        config.setdefault(section, {})[key] = value
    check_keys(config, model_name)
    return config


def check_keys(config: dict, model_name: str) -> None:
    classes = section_classes(model_name)
    for section, values in config.items():
        if section not in classes:
            raise ValueError(f"unknown config section {section!r}; expected one of {SECTIONS}")
        known = {f.name for f in dataclasses.fields(classes[section])}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {section} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _is_list_option(cls: type, name: str) -> bool:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return any(t in str(field.type) for t in ("list", "tuple"))


def sweep_axes(config: dict, model_name: str) -> dict[tuple[str, str], list]:
    """The (section, key) -> values that define a grid."""
    classes = section_classes(model_name)
    axes = {}
    for section, values in config.items():
        for key, value in values.items():
            if not isinstance(value, list):
                continue
            if _is_list_option(classes[section], key):
                if value and all(isinstance(v, list) for v in value):
                    axes[(section, key)] = value
            else:
                axes[(section, key)] = value
    return axes


def expand_grid(config: dict, model_name: str) -> list[tuple[dict, dict]]:
    """Every point of the sweep as ``(point, config)``; a config without lists gives one point ``{}``."""
    axes = sweep_axes(config, model_name)
    points = []
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo, strict=True))
        resolved = copy.deepcopy(config)
        for (section, key), value in point.items():
            resolved[section][key] = value
        points.append(({f"{s}.{k}": v for (s, k), v in point.items()}, resolved))
    return points


def instantiate(cls: type, values: dict) -> Any:
    """Build a section dataclass, turning YAML lists into tuples where the default is a tuple."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            if isinstance(value, list) and "tuple" in str(f.type):
                value = tuple(value)
            if isinstance(value, str) and str(f.type).startswith("float"):
                value = _number(value)  # YAML 1.1 reads 1e-3 as a string
            kwargs[f.name] = value
    return cls(**kwargs)
