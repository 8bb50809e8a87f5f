"""Experiments: dataset + config -> graph -> model -> trainer, over a grid of configs and several seeds.

Selection is on validation only: each grid point is trained with the first seed, the point with the best
validation metric is kept, and only that point is run with the remaining seeds.  The test metrics of the
other points are never looked at for selection (they are not even computed).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import dgl
import numpy as np
import yaml

from dglmm.config import DataConfig, TrainConfig, expand_grid, instantiate, resolve_config, section_classes
from dglmm.data.dataset import Dataset
from dglmm.errors import InputError
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.io import load_checkpoint, load_model_state, make_folder, read_run_config, write_json, write_text
from dglmm.models import REGISTRY, Recommender, make_config
from dglmm.options import inactive_options
from dglmm.train import distributed
from dglmm.train.trainer import Trainer, seed_everything


def model_class(model_name: str) -> type[Recommender]:
    """The registered model class called ``model_name`` (InputError listing the known names otherwise)."""
    if model_name not in REGISTRY:
        raise InputError(f"unknown model {model_name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[model_name]


def model_sections(model_name: str) -> dict[str, type]:
    """The config dataclass of each section for ``model_name`` (see :func:`dglmm.config.section_classes`)."""
    return section_classes(model_class(model_name).Config)


def resolve_model_config(model_name: str, dataset_name: str, files: list[str] = (),  # type: ignore[assignment]
                         overrides: list[str] = ()) -> dict:  # type: ignore[assignment]
    """:func:`dglmm.config.resolve_config` with the config class of the registered model ``model_name``."""
    return resolve_config(model_name, dataset_name, files, overrides, model_config=model_class(model_name).Config)


def prepare_dataset(dataset: Dataset, data: DataConfig) -> Dataset:
    """Apply the split protocol of the ``data`` section, then its robustness corruptions (training data only)."""
    from dglmm.data.robustness import perturb

    if data.split == "cold_start":
        from dglmm.data.splits import cold_start_split

        dataset = cold_start_split(dataset, frac=data.cold_frac, seed=data.split_seed)
    return perturb(dataset, data.noise_interactions, data.noise_kg, data.drop_features, data.noise_seed)


def evaluation_candidates(dataset: Dataset, data: DataConfig) -> dict[str, np.ndarray] | None:
    """Cold-start protocol: valid/test rank only the cold items of that split (``data.cold_rank``)."""
    if data.split != "cold_start" or data.cold_rank == "all_items":
        return None
    return {s: np.unique(dataset.split(s)[:, 1]) for s in ("valid", "test")}


def build_model(model_name: str, dataset: Dataset, graph: dgl.DGLGraph, options: dict) -> Recommender:
    cls = model_class(model_name)
    if cls.needs_modalities and not dataset.modalities:
        raise InputError(f"model {model_name!r} needs item features; dataset {dataset.name!r} has none")
    if cls.needs_kg and len(dataset.kg) == 0:
        raise InputError(f"model {model_name!r} needs a knowledge graph; dataset {dataset.name!r} has none")
    return cls(dataset, graph, make_config(cls, options))


class PreparedRun(NamedTuple):
    """Everything a config turns into before training: the split dataset, its graph, the model, the trainer."""

    dataset: Dataset
    graph: dgl.DGLGraph
    model: Recommender
    trainer: Trainer


def prepare_run(model_name: str, dataset: Dataset, config: dict, run_dir: Path | None = None,
                graph_cache: Path | bool | None = None) -> PreparedRun:
    """Split protocol, heterograph, seeded model and trainer of one config (training and ``evaluate`` alike)."""
    train_cfg = instantiate(TrainConfig, config.get("train", {}))
    data_cfg = instantiate(DataConfig, config.get("data", {}))
    split = prepare_dataset(dataset, data_cfg)
    graph = build_graph(split, instantiate(GraphConfig, config.get("graph", {})), cache_dir=graph_cache)
    seed_everything(train_cfg.seed)
    model = build_model(model_name, split, graph, config.get("model", {}))
    trainer = Trainer(model, graph, split, train_cfg, run_dir, evaluation_candidates(split, data_cfg))
    return PreparedRun(split, graph, model, trainer)


def run_once(model_name: str, dataset: Dataset, config: dict, run_dir: Path | None,
             resume: bool = False, graph_cache: Path | bool | None = None) -> dict:
    """Train and test one config with ``config['train']['seed']``; returns the results dict."""
    prepared = prepare_run(model_name, dataset, config, run_dir, graph_cache)
    if run_dir is not None and distributed.is_main():  # under torchrun only rank 0 writes
        make_folder(run_dir)
        write_text(run_dir / "config.yaml", yaml.safe_dump(
            {"model_name": model_name, "dataset": dataset.source or dataset.name, **_plain(config)}))
        write_text(run_dir / "resolved.yaml", yaml.safe_dump(resolved_config(model_name, prepared, config)))
    trainer = prepared.trainer
    if resume and run_dir is not None and (run_dir / "checkpoint.pt").exists():
        trainer.resume(run_dir / "checkpoint.pt")      # the checkpoint's parameters, never re-initialised
    else:
        prepared.model.load_pretrained(trainer.config.seed)  # e.g. KGAT's pretrain: a trained MF's embeddings
    results = trainer.fit()
    results["model"] = model_name
    results["dataset"] = prepared.dataset.name
    return results


def resolved_config(model_name: str, prepared: PreparedRun, config: dict) -> dict:
    """Every option of a run, defaults included, and the dglmm version: the record of what ran, which stays
    true when a later version changes a default (``config.yaml`` holds only what was set, and rebuilds the run).
    ``inactive`` maps each option that had no effect in this run (its ``active_when`` condition failed) to why."""
    sections = {"model": prepared.model.config, "train": prepared.trainer.config,
                "data": instantiate(DataConfig, config.get("data", {})),
                "graph": instantiate(GraphConfig, config.get("graph", {}))}
    from dglmm import __version__

    inactive = inactive_options(sections)
    return {"model_name": model_name, "dglmm_version": __version__,
            **_plain({name: dataclasses.asdict(section) for name, section in sections.items()}),
            "inactive": {key: f"no effect: {reason}" for key, reason in sorted(inactive.items())}}


def _plain(config: dict) -> dict:
    """Tuples -> lists so that YAML stays readable."""
    return {s: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for s, values in config.items()}


def aggregate(results: list[dict], split: str = "test") -> dict[str, dict[str, float]]:
    """Mean and (population) std of every metric over seeds."""
    keys = [k for k in results[0][split] if k != "n_users"]
    return {k: {"mean": float(np.mean([r[split][k] for r in results])),
                "std": float(np.std([r[split][k] for r in results]))} for k in keys}


def summarize_runs(runs: list[dict], seeds: list[int]) -> dict:
    """The seed-aggregated part of a summary (what :func:`dglmm.report.format_summary_table` reads): mean and
    std of the test and validation metrics and of the item groups, each run's best epoch (from 1), the runs."""
    return {"seeds": seeds, "test": aggregate(runs, "test"), "valid": aggregate(runs, "valid"),
            **{g: aggregate(runs, g) for g in ("test_cold", "test_few") if all(g in r for r in runs)},
            "best_epochs": [r["best_epoch"] for r in runs], "runs": runs}


def run_experiment(model_name: str, dataset: Dataset, config: dict, out_dir: Path | None,
                   seeds: int = 1, graph_cache: Path | bool | None = None) -> dict:
    """Grid search on validation (first seed), then ``seeds`` runs of the selected point."""
    if out_dir is not None and distributed.is_main():
        make_folder(out_dir.parent)  # a bad --out fails now, before any graph is built or model trained
    points = expand_grid(config, model_sections(model_name))
    metrics = {instantiate(TrainConfig, cfg.get("train", {})).metric for _, cfg in points}
    if len(metrics) > 1:
        raise InputError(f"train.metric cannot be swept ({', '.join(sorted(metrics))}): selection compares "
                         "every grid point on one validation metric")
    metric = metrics.pop()
    base_seed = int(config.get("train", {}).get("seed", TrainConfig.seed))
    started = time.time()
    trials = []
    for index, (point, cfg) in enumerate(points):
        run_dir = _run_dir(out_dir, index if len(points) > 1 else None, 0)
        cfg["train"]["seed"] = base_seed
        result = run_once(model_name, dataset, cfg, run_dir, graph_cache=graph_cache)
        trials.append({"point": point, "valid": result["valid"], "result": result, "config": cfg})
    best = max(trials, key=lambda t: t["valid"].get(metric, -np.inf))
    runs = [best["result"]]
    best_index = trials.index(best)
    for s in range(1, seeds):
        cfg = best["config"]
        cfg["train"]["seed"] = base_seed + s
        runs.append(run_once(model_name, dataset, cfg, _run_dir(out_dir, best_index if len(points) > 1
                                                                else None, s), graph_cache=graph_cache))
    grid = [{"point": t["point"], "valid": t["valid"]} for t in trials]
    return _summary(model_name, dataset, best["point"], metric, grid, runs, base_seed, started, out_dir)


def extend_experiment(model_name: str, dataset: Dataset, config: dict, out_dir: Path, seeds: int) -> dict:
    """Continue every seed run of a one-point experiment in ``out_dir`` with ``config``'s larger
    ``train.epochs`` / ``train.patience`` (each from its last checkpoint; a seed without one is trained anew):
    the runs end as runs started with that budget would have.  Returns the summary, as :func:`run_experiment`."""
    points = expand_grid(config, model_sections(model_name))
    if len(points) > 1:
        raise InputError(f"{out_dir}: a grid cannot be extended (its selection may change); run it anew")
    point, cfg = points[0]
    base_seed = int(config.get("train", {}).get("seed", TrainConfig.seed))
    metric = instantiate(TrainConfig, cfg["train"]).metric
    started = time.time()
    runs = []
    for s in range(seeds):
        cfg["train"]["seed"] = base_seed + s
        run_dir = _run_dir(out_dir, None, s)
        runs.append(run_once(model_name, dataset, cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists()))
    grid = [{"point": point, "valid": runs[0]["valid"]}]
    return _summary(model_name, dataset, point, metric, grid, runs, base_seed, started, out_dir)


def _summary(model_name: str, dataset: Dataset, selected: dict, metric: str, grid: list[dict], runs: list[dict],
             base_seed: int, started: float, out_dir: Path | None) -> dict:
    """An experiment's summary (written to ``out_dir/summary.json`` by the main process): the selected point,
    the grid's validation results and the seed runs aggregated."""
    summary = {"model": model_name, "dataset": dataset.name, "selected": selected, "metric": metric, "grid": grid,
               **summarize_runs(runs, [base_seed + s for s in range(len(runs))]),
               "seconds": round(time.time() - started, 1)}
    if out_dir is not None and distributed.is_main():
        write_json(out_dir / "summary.json", summary)
    return summary


def _run_dir(out_dir: Path | None, point: int | None, seed_index: int) -> Path | None:
    if out_dir is None:
        return None
    parts = ([f"point{point}"] if point is not None else []) + [f"seed{seed_index}"]
    return out_dir.joinpath(*parts)


def evaluate_run(run_dir: Path, split: str = "test", dataset_spec: str | None = None) -> dict[str, float]:
    """Rebuild a run's dataset, graph, model and trainer from ``config.yaml``, load ``best.pt`` (parameters
    and derived graphs) and evaluate ``split`` exactly as the run's own test did."""
    from dglmm.data.readers import load_dataset

    config = read_run_config(run_dir)
    best_path = run_dir / "best.pt"
    if not best_path.exists():
        raise FileNotFoundError(f"{best_path}: not found (is {run_dir} a run folder with a finished epoch?)")
    model_name, source = config.pop("model_name"), config.pop("dataset")
    prepared = prepare_run(model_name, load_dataset(dataset_spec or source), config)
    state = load_checkpoint(best_path, map_location=prepared.trainer.device)
    load_model_state(prepared.model, state, best_path, prepared.dataset.name)
    return prepared.trainer.evaluate(split)
