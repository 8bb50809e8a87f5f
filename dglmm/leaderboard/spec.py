"""The board's specification (a small YAML file, ``dglmm/configs/leaderboard.yaml`` by default) and its rows.

A *row* is one model on one data set: the model's own name, or a documented variant of it when the data lacks
one of the inputs it uses (SLIF-MR without a KG runs as ``w/o KG``).  A model that needs an input the data
lacks and has no such variant is *not applicable* there and listed as such under the table.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from dglmm.errors import InputError

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "configs" / "leaderboard.yaml"
BUDGET_KEYS = {"trials": int, "seeds": int, "epochs": int, "patience": int, "pruner": str,
               "prune_startup_trials": int, "prune_warmup_epochs": int, "startup_trials": int, "seed": int}
INPUTS = ("kg", "modalities")
SPEC_KEYS = ("budget", "models", "datasets", "variants", "models_set", "questions")


@dataclasses.dataclass
class DataSpec:
    """One data set of the board."""

    key: str
    source: str
    title: str
    about: str = ""
    prepare: str = ""
    set: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # reader options, e.g. synthetic sizes
    inputs: list[str] | None = None  # what it offers (kg, modalities), for planning its rows while it is absent


@dataclasses.dataclass
class Spec:
    """Data sets, models, the one budget, the variants for missing inputs and fixed per-model options."""

    budget: dict[str, Any]
    models: list[str] | None  # None: every registered model
    datasets: list[DataSpec]
    variants: dict[str, dict] = dataclasses.field(default_factory=dict)
    models_set: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    questions: list[dict] = dataclasses.field(default_factory=list)  # answered under the tables (questions.py)
    path: str = ""

    def model_names(self) -> list[str]:
        """The board's models: the listed ones, or every model registered now (new ones join on the next run)."""
        from dglmm.models import REGISTRY

        if self.models is None:
            return sorted(REGISTRY)
        unknown = [m for m in self.models if m not in REGISTRY]
        if unknown:
            raise InputError(f"{self.path}: models {', '.join(unknown)} are not registered "
                             f"(dglmm models lists {', '.join(sorted(REGISTRY))})")
        return list(self.models)


@dataclasses.dataclass(frozen=True)
class Row:
    """One model (or one of its variants) on one data set, and its study folder name."""

    dataset: str
    model: str
    variant: str = ""
    overrides: tuple[str, ...] = ()
    uses_kg: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} ({self.variant})" if self.variant else self.model

    @property
    def study(self) -> str:
        return self.model + (f"-{slug(self.variant)}" if self.variant else "")


def slug(text: str) -> str:
    """A folder-safe form of a label: ``w/o KG&MM`` -> ``wo-kg-mm``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("w/o", "wo")).strip("-")


def load_spec(path: str | Path | None = None) -> Spec:
    """Read and check a board specification; every problem is one :class:`InputError` naming the file."""
    from dglmm.config import read_yaml
    from dglmm.leaderboard.questions import check_questions

    path = Path(path) if path else DEFAULT_SPEC
    data = read_yaml(path)  # a readable YAML mapping, else one line naming the file
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(SPEC_KEYS)})")
    datasets = _datasets(path, data.get("datasets") or {})
    return Spec(budget=_budget(path, data.get("budget") or {}), models=_models(path, data.get("models", "all")),
                datasets=datasets,
                variants=_variants(path, data.get("variants") or {}),
                models_set={str(k): _strings(path, f"models_set.{k}", v)
                            for k, v in (data.get("models_set") or {}).items()},
                questions=check_questions(path, data.get("questions"), [d.key for d in datasets]),
                path=str(path))


def _budget(path: Path, budget: dict) -> dict[str, Any]:
    missing = [k for k in BUDGET_KEYS if k not in budget]
    extra = sorted(set(budget) - set(BUDGET_KEYS))
    if missing or extra:
        raise InputError(f"{path}: budget needs exactly {', '.join(BUDGET_KEYS)} "
                         f"({'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(extra)})")
    for key, kind in BUDGET_KEYS.items():
        if not isinstance(budget[key], kind) or isinstance(budget[key], bool):
            raise InputError(f"{path}: budget.{key} must be {kind.__name__}, got {budget[key]!r}")
    return dict(budget)


def _models(path: Path, models: Any) -> list[str] | None:
    if models == "all":
        return None
    return _strings(path, "models", models)


def _strings(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{path}: {key} must be a list of strings, got {value!r}")
    return list(value)


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{path}: {key} must be a mapping, got {value!r}")
    return dict(value)


def _inputs(path: Path, key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not set(value) <= set(INPUTS):
        raise InputError(f"{path}: {key} must list inputs among {', '.join(INPUTS)}, got {value!r}")
    return list(value)


def _datasets(path: Path, datasets: Any) -> list[DataSpec]:
    if not isinstance(datasets, dict) or not datasets:
        raise InputError(f"{path}: datasets must map names to {{source, title}}")
    out = []
    for key, entry in datasets.items():
        if not isinstance(entry, dict) or "source" not in entry:
            raise InputError(f"{path}: datasets.{key} needs a source (a known name or a path)")
        extra = sorted(set(entry) - {f.name for f in dataclasses.fields(DataSpec)})
        if extra or slug(str(key)) != str(key):
            raise InputError(f"{path}: datasets.{key}: " + (f"unknown keys {', '.join(extra)}" if extra else
                                                            "a data set key is lower-case letters, digits, -"))
        out.append(DataSpec(key=str(key), source=str(entry["source"]), title=str(entry.get("title", key)),
                            about=str(entry.get("about", "")), prepare=str(entry.get("prepare", "")),
                            set=_strings(path, f"datasets.{key}.set", entry.get("set", [])),
                            options=_mapping(path, f"datasets.{key}.options", entry.get("options", {})),
                            inputs=_inputs(path, f"datasets.{key}.inputs", entry.get("inputs"))))
    return out


def _variants(path: Path, variants: Any) -> dict[str, dict]:
    out = {}
    for model, entry in variants.items():
        uses = entry.get("uses", []) if isinstance(entry, dict) else None
        if not isinstance(uses, list) or not set(uses) <= set(INPUTS):
            raise InputError(f"{path}: variants.{model}.uses must list inputs among {', '.join(INPUTS)}")
        without = {}
        for missing, variant in (entry.get("without") or {}).items():
            if not set(missing.split("+")) <= set(uses) or not isinstance(variant, dict) or "label" not in variant:
                raise InputError(f"{path}: variants.{model}.without.{missing}: a set of used inputs joined by "
                                 "'+', mapped to {label, set}")
            without[_key(missing.split("+"))] = {"label": str(variant["label"]),
                                                 "set": _strings(path, f"variants.{model}.without.{missing}.set",
                                                                 variant.get("set", []))}
        out[str(model)] = {"uses": list(uses), "without": without}
    return out


def _key(inputs: Any) -> str:
    return "+".join(sorted(inputs))


def model_inputs(spec: Spec, model: str) -> set[str]:
    """The inputs a model uses: those its class needs (item features, a KG) and those its variants can drop."""
    from dglmm.train.run import model_class

    cls = model_class(model)
    needs = {name for name, flag in (("kg", cls.needs_kg), ("modalities", cls.needs_modalities)) if flag}
    return needs | set(spec.variants.get(model, {}).get("uses", []))


def plan_rows(spec: Spec, data: DataSpec, has: set[str]) -> tuple[list[Row], dict[str, str]]:
    """The rows of one data set whose inputs are ``has``, and the models not applicable there with the reason."""
    rows, skipped = [], {}
    for model in spec.model_names():
        uses = model_inputs(spec, model)
        missing = uses - has
        extra = [*data.set, *spec.models_set.get(model, [])]
        if not missing:
            rows.append(Row(data.key, model, overrides=tuple(extra), uses_kg="kg" in uses))
            continue
        variant = spec.variants.get(model, {}).get("without", {}).get(_key(missing))
        if variant is not None:
            rows.append(Row(data.key, model, variant["label"], tuple([*extra, *variant["set"]]),
                            uses_kg="kg" in uses - missing))
        else:
            skipped[model] = "needs " + " and ".join("item features" if m == "modalities" else "a KG"
                                                     for m in sorted(missing))
    return rows, skipped


def dataset_inputs(dataset: Any) -> set[str]:
    """The inputs a loaded data set offers: ``modalities`` (item features) and/or ``kg``."""
    return ({"modalities"} if dataset.modalities else set()) | ({"kg"} if len(dataset.kg) else set())
