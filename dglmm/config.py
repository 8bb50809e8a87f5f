"""Layered configuration: overall < dataset < model < user files < command line, with grid sweeps.

A resolved config is a plain dict with four sections, each checked against a dataclass:

* ``data``  -> :class:`DataConfig` (split protocol),
* ``graph`` -> :class:`dglmm.graph.build.GraphConfig`,
* ``model`` -> the model's own ``Config`` dataclass (given by the caller: this module does not import the
  models or the trainer),
* ``train`` -> :class:`TrainConfig`.

Every value is checked by :func:`dglmm.options.build` (type, choices, range), for every point of a sweep,
before anything is trained.

Overrides are ``section.key=value`` (YAML-parsed value); a bare ``key=value`` is resolved to the one section
that has ``key``.  A list value for a scalar option (or a list of lists for a list option) defines a sweep:
:func:`expand_grid` returns one config per point of the Cartesian product.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dglmm.errors import InputError
from dglmm.metric_keys import metric_names
from dglmm.options import LogUniform, OptionError, build, describe, inactive_options, option, renamed

SECTIONS = ("data", "graph", "model", "train")


@dataclasses.dataclass
class DataConfig:
    """The split protocol (section ``data``)."""

    split: str = option("given", "'given' (the dataset's split) or 'cold_start' (MICRO 4.1.3)",
                        choices=("given", "cold_start"))
    cold_frac: float = option(0.2, "share of items made cold", low=0.0, high=1.0, low_open=True, high_open=True)
    split_seed: int = option(2024, "seed of generated splits", low=0)
    cold_rank: str = option("cold_items", "cold start: rank only the split's 'cold_items' or 'all_items'",
                            choices=("cold_items", "all_items"))
    noise_interactions: float = option(0.0, "robustness: share of training interactions replaced by random ones",
                                       low=0.0, high=1.0, high_open=True)
    noise_kg: float = option(0.0, "robustness: share of KG triples whose tail is replaced by a random node",
                             low=0.0, high=1.0, high_open=True)
    drop_features: float = option(0.0, "robustness: share of items whose features (all modalities) are removed",
                                  low=0.0, high=1.0, high_open=True)
    noise_seed: int = option(2024, "seed of the robustness corruptions", low=0)


@dataclasses.dataclass
class TrainConfig:
    """The training loop (section ``train``); see :class:`dglmm.train.trainer.Trainer`."""

    epochs: int = option(1000, "maximum number of epochs", low=1)
    batch_size: int = option(2048, "BPR triples per batch", low=1)
    lr: float = option(1e-3, "Adam learning rate; searched over 1e-4..1e-2, a documented range around the "
                       "papers' 1e-3 that spans NGCF's lr grid {1e-4, 5e-4, 1e-3, 5e-3}", low=0.0, low_open=True,
                       space=LogUniform(1e-4, 1e-2))
    weight_decay: float = option(0.0, "Adam weight decay on all parameters (models add their own L2 terms)",
                                 low=0.0)
    patience: int = option(20, "stop after this many evaluations without validation improvement", low=0)
    eval_every: int = option(1, "validate every N epochs", low=1)
    metric: str = option("recall@20", "validation metric for selection: <metric>@<K> with K one of train.ks")
    ks: tuple[int, ...] = option((10, 20, 50), "cut-offs K", low=1)
    seed: int = option(2024, "seed of torch, numpy, python and sampler", low=0)
    checkpoint_every: int = option(5, "write checkpoint.pt every N epochs", low=1)
    eval_chunk_size: int = option(1024, "users per full-ranking chunk", low=1)
    mask_valid_in_test: bool = option(False, "also mask validation items when testing (official code: no)")
    negative_pool: str = option("all", "negatives from 'all' items or only 'train_items' (cold items unseen)",
                                choices=("all", "train_items"))
    few_interactions: int = option(
        5, "results also report test metrics on items with 1..N training interactions", low=0)
    device: str = option("cpu", "torch device, e.g. cpu or cuda:0")
    progress: bool = option(True, "progress bar per epoch when stderr is a terminal (else one line per epoch)")

    def check_options(self, section: str = "train") -> None:
        """``metric`` must be one the evaluator reports: ``<name>@<K>`` with K in ``ks``."""
        known = metric_names(self.ks)
        if self.metric not in known:
            raise OptionError(f"{section}.metric must be one of {', '.join(known)} (K from {section}.ks); "
                              f"got {self.metric!r}")


def section_classes(model_config: type) -> dict[str, type]:
    """The dataclass that validates each section, given the model's config class (``cls.Config``)."""
    from dglmm.graph.build import GraphConfig

    return {"data": DataConfig, "graph": GraphConfig, "model": model_config, "train": TrainConfig}


def read_yaml(path: Path | str) -> dict:
    """A config file: a mapping of sections (InputError naming the file when unreadable or not a mapping)."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file must be a mapping of sections")
    return data


RUN_KEYS = ("model_name", "dataset")  # what a run folder's config.yaml records beside its sections


def recorded_run(files: list[str]) -> dict[str, str]:
    """``model_name`` and ``dataset`` as the ``-c`` files record them (a run folder's ``config.yaml``; a later
    file wins): what ``dglmm train -c RUN/config.yaml`` trains when ``-m``/``-d`` are left out."""
    found: dict[str, str] = {}
    for path in files:
        layer = read_yaml(path)
        found.update({key: str(layer[key]) for key in RUN_KEYS if layer.get(key) is not None})
    return found


def recorded_dataset_name(source: str) -> str:
    """The name of the data set a run recorded as ``source``: an ``.inter`` file's stem (the name the MMRec and
    RecBole readers give it), else the folder's or the known name's last part."""
    path = Path(source)
    return path.stem if path.suffix == ".inter" else path.name


def _run_keys_agree(layer: dict, path: str, model_name: str, dataset_name: str) -> dict:
    """``layer`` without :data:`RUN_KEYS`, after checking that they name this model and data set."""
    if layer.get("model_name") not in (None, model_name):
        raise InputError(f"{path}: the file is for model {layer['model_name']!r}, not {model_name!r} "
                         "(leave -m out to train its model)")
    if layer.get("dataset") is not None and recorded_dataset_name(str(layer["dataset"])) != dataset_name:
        raise InputError(f"{path}: the file is for data set {layer['dataset']!r}, not {dataset_name!r} "
                         "(leave -d out to train on its data set)")
    return {k: v for k, v in layer.items() if k not in RUN_KEYS}


def _packaged(kind: str, name: str) -> dict:
    """A YAML file shipped in ``dglmm/configs`` (empty when there is none)."""
    ref = resources.files("dglmm.configs")
    path = ref / "overall.yaml" if kind == "overall" else ref / kind / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


PACKAGED_LAYERS = ("overall.yaml", "datasets/<dataset>.yaml", "models/<model>.yaml")  # in dglmm/configs


def packaged_layers(model_name: str, dataset_name: str, model_config: type | None = None) -> dict:
    """The layers shipped in ``dglmm/configs`` merged in order (:data:`PACKAGED_LAYERS`; a missing file is an
    empty layer): what ``dglmm train`` starts from before ``-c`` files and ``--set``.

    With ``model_config`` (the model's config class), the model file's values that restate a declared default
    are left out: the shipped files hold the defaults, so they add nothing to a run's ``config.yaml`` (the
    options set) unless someone changes one; ``resolved.yaml`` records every value either way."""
    model_layer = _packaged("models", model_name)
    if model_config is not None:
        model_layer = _beyond_defaults(model_layer, section_classes(model_config))
    config: dict = {s: {} for s in SECTIONS}
    for layer in (_packaged("overall", ""), _packaged("datasets", dataset_name), model_layer):
        config = merge(config, layer)
    return config


def _beyond_defaults(layer: dict, sections: dict[str, type]) -> dict:
    """``layer`` without the values equal to their option's declared default (compared once coerced)."""
    out: dict = {}
    for section, values in layer.items():
        if section not in sections or not isinstance(values, dict):
            out[section] = values          # check_keys reports it
            continue
        defaults = build(sections[section], {}, section)
        out[section] = {k: v for k, v in values.items() if not _is_default(sections[section], section, k, v, defaults)}
    return out


def _is_default(cls: type, section: str, key: str, value: Any, defaults: Any) -> bool:
    try:
        return getattr(build(cls, {key: value}, section), key) == getattr(defaults, key)
    except InputError:      # unknown option, a sweep, a bad value: kept, and reported or expanded later
        return False


MODEL_LAYER_HEADER = """\
# The defaults of this model's options: the model layer of dglmm's configuration, read by every
# `dglmm train -m {name}` (overall.yaml < datasets/<dataset>.yaml < this file < -c FILE < --set).
# Copy it, edit the copy and pass it with -c: options that have no effect under these defaults are commented
# out, so the copy is a valid -c file as it is. Written by `dglmm models {name} --yaml` from the declared
# options; a test keeps it equal to them.
"""


def model_layer_text(model_name: str, model_config: type, summary: str = "") -> str:
    """``dglmm/configs/models/<model>.yaml``: the ``model`` section with every declared option at its default,
    each after its help as a comment; an option inactive under the defaults (``active_when``) is commented out
    with the reason, so the text passes as a ``-c`` file unchanged."""
    defaults = {s: build(cls, {}, s) for s, cls in section_classes(model_config).items()}
    inactive = inactive_options(defaults)
    lines = textwrap.wrap(f"{model_name}: {summary}" if summary else model_name, 108, initial_indent="# ",
                          subsequent_indent="#   ")
    lines += [MODEL_LAYER_HEADER.format(name=model_name).rstrip("\n"), "model:"]
    for field in dataclasses.fields(model_config):
        value = getattr(defaults["model"], field.name)
        value = list(value) if isinstance(value, tuple) else value
        text = f"{field.metadata.get('help', '')} {describe(field.metadata)}".strip()
        lines += textwrap.wrap(text, 106, initial_indent="  # ", subsequent_indent="  #   ")
        entry = f"{field.name}: {yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]}"
        reason = inactive.get(f"model.{field.name}")
        lines += [f"  # {entry}    # no effect here: {reason}"] if reason else [f"  {entry}"]
    return "\n".join(lines) + "\n"


def packaged_files(kind: str) -> list[str]:
    """The names that have a shipped layer of ``kind`` (``datasets`` or ``models``)."""
    folder = resources.files("dglmm.configs") / kind
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []


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
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise InputError(f"--set value {raw!r} is not valid YAML") from None
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


def parse_override(text: str, sections: dict[str, type]) -> tuple[str, str, Any]:
    """``'train.lr=1e-3'`` -> ``('train', 'lr', 0.001)``; a bare key is looked up in every section.

    ``sections`` is :func:`section_classes` of the model.
    """
    if "=" not in text:
        raise InputError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    value = parse_value(raw)
    if "." in key:
        section, name = key.split(".", 1)
        return section, name, value
    owners = [s for s, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if len(owners) != 1:
        where = "no section" if not owners else f"sections {owners}"
        raise InputError(f"option {key!r} is in {where}; write it as section.{key}")
    return owners[0], key, value


def resolve_config(model_name: str, dataset_name: str, files: list[str] = (),  # type: ignore[assignment]
                   overrides: list[str] = (), *, model_config: type) -> dict:  # type: ignore[assignment]
    """Merge the layers in priority order and check every key and value against its section's dataclass.

    ``model_config`` is the model's config class (``REGISTRY[model_name].Config``).
    """
    sections = section_classes(model_config)
    config = packaged_layers(model_name, dataset_name, model_config)
    below_model_file = _keys(merge(_packaged("overall", ""), _packaged("datasets", dataset_name)))
    user_keys: set[tuple[str, str]] = set()   # what the user set (-c files, --set), not the packaged defaults
    for path in files:
        layer = _renamed(_run_keys_agree(read_yaml(path), path, model_name, dataset_name), sections)
        set_here = [(s, k) for s, values in layer.items() if isinstance(values, dict) for k in values]
        config = merge(config, layer)
        _in_user_order(config, [key for key in set_here if key not in below_model_file and key not in user_keys])
        user_keys |= set(set_here)
    for text in overrides:
        section, key, value = parse_override(text, sections)
        (key,) = _renamed({section: {key: value}}, sections).get(section, {key: value})
        config.setdefault(section, {})[key] = value
        if (section, key) not in below_model_file and (section, key) not in user_keys:
            _in_user_order(config, [(section, key)])
        user_keys.add((section, key))
    check_keys(config, sections)
    points = expand_grid(config, sections)  # checks the values of every point of a sweep
    check_set_options(points, sections, user_keys)
    return config


def _keys(config: dict) -> set[tuple[str, str]]:
    return {(s, k) for s, values in config.items() if isinstance(values, dict) for k in values}


def _in_user_order(config: dict, keys: list[tuple[str, str]]) -> None:
    """Move options the user sets first to the end of their section, in the user's order: a grid's axes (and
    so the order of its points) follow the order the user wrote them in, whatever the model file lists."""
    for section, key in keys:
        config[section][key] = config[section].pop(key)


def _renamed(layer: dict, sections: dict[str, type]) -> dict:
    """A config layer with the former option names replaced by the current ones (one warning each)."""
    return {s: renamed(sections[s], values, s) if s in sections and isinstance(values, dict) else values
            for s, values in layer.items()}


def effective_options(resolved: dict, sections: dict[str, type]) -> tuple[dict, dict[str, str]]:
    """One point's config with its inactive options dropped (what a run of it depends on), and those options
    with the reason each is inactive (:func:`dglmm.options.inactive_options`)."""
    instances = {s: build(sections[s], values, s) for s, values in resolved.items()}
    inactive = inactive_options(instances)
    effective = {s: {k: v for k, v in dataclasses.asdict(inst).items() if f"{s}.{k}" not in inactive}
                 for s, inst in instances.items()}
    return effective, inactive


def check_set_options(points: list[tuple[dict, dict]], sections: dict[str, type],
                      user_keys: set[tuple[str, str]]) -> None:
    """OptionError (one line) for an option the user set that has no effect at any point of the grid."""
    inactive_everywhere: dict[str, str] | None = None
    for _, resolved in points:
        _, inactive = effective_options(resolved, sections)
        inactive_everywhere = inactive if inactive_everywhere is None else \
            {k: r for k, r in inactive_everywhere.items() if k in inactive}
    for section, key in sorted(user_keys):
        reason = (inactive_everywhere or {}).get(f"{section}.{key}")
        if reason is not None:
            raise OptionError(f"{section}.{key} has no effect here: {reason}; remove it or change that option")


def check_keys(config: dict, sections: dict[str, type]) -> None:
    """InputError for an unknown section, OptionError for an unknown option."""
    for section, values in config.items():
        if section not in sections:
            raise InputError(f"unknown config section {section!r}; expected one of {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise InputError(f"config section {section!r} must be a mapping of options, got {values!r}")
        known = {f.name for f in dataclasses.fields(sections[section])}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OptionError(f"unknown {section} option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")


def _is_list_option(cls: type, name: str) -> bool:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return any(t in str(field.type) for t in ("list", "tuple"))


def sweep_axes(config: dict, sections: dict[str, type]) -> dict[tuple[str, str], list]:
    """The (section, key) -> values that define a grid."""
    axes = {}
    for section, values in config.items():
        for key, value in values.items():
            if not isinstance(value, list):
                continue
            if _is_list_option(sections[section], key):
                if value and all(isinstance(v, list) for v in value):
                    axes[(section, key)] = value
            else:
                axes[(section, key)] = value
    return axes


def expand_grid(config: dict, sections: dict[str, type]) -> list[tuple[dict, dict]]:
    """Every point of the sweep as ``(point, config)``; a config without lists gives one point ``{}``.

    Every section of every point is checked with :func:`dglmm.options.build` (OptionError on a bad value).
    Points that differ only in options inactive there (e.g. ``knn_k`` where ``lambda_coeff=1`` disables the
    learned graph) are one effective point: only the first of them is kept, so a grid never trains the same
    thing twice.
    """
    check_keys(config, sections)
    axes = sweep_axes(config, sections)
    points, seen = [], []
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo, strict=True))
        resolved = copy.deepcopy(config)
        for (section, key), value in point.items():
            resolved[section][key] = value
        effective, _ = effective_options(resolved, sections)   # builds (checks) every section
        if effective in seen:
            continue
        seen.append(effective)
        points.append(({f"{s}.{k}": v for (s, k), v in point.items()}, resolved))
    return points


_SECTION_NAMES = {DataConfig: "data", TrainConfig: "train"}


def instantiate(cls: type, values: dict, section: str | None = None) -> Any:
    """Build a section dataclass from a dict with :func:`dglmm.options.build` (coerced and checked)."""
    if section is None:
        section = _SECTION_NAMES.get(cls, "graph" if cls.__name__ == "GraphConfig" else "model")
    return build(cls, values, section)
