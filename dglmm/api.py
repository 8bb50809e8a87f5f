"""The public Python API, importable from the package: ``import dglmm``.

>>> import dglmm
>>> base = dglmm.fit("lightgcn", "synthetic", overrides={"train.epochs": 5})     # doctest: +SKIP
>>> run = dglmm.fit("vbpr", "synthetic", overrides={"train.epochs": 5})          # doctest: +SKIP
>>> run.recommend(users=["0", "7"], k=10)                                          # doctest: +SKIP
>>> dglmm.compare_runs(base, run)                                                       # doctest: +SKIP

:func:`fit` trains a model on a dataset (a grid search on validation when an option is a list, then
``seeds`` runs) and returns a :class:`Run`; :func:`load` opens a finished run folder as a :class:`Run`
(dataset, heterograph, model and its learned graphs restored from ``best.pt``); a run evaluates, recommends
(:meth:`Run.recommend`) and exports its representations (:meth:`Run.export`); :func:`compare_runs` tests runs
against a baseline.  Everything outside this module and the names it lists in ``__all__`` is internal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dgl
import numpy as np
import pandas as pd
import torch

from dglmm.data.dataset import Dataset
from dglmm.errors import InputError

__all__ = ["Run", "build_graph", "compare_runs", "describe", "fit", "load", "load_dataset", "model_class",
           "model_names"]


def load_dataset(name_or_path: str | Path, **options: Any) -> Dataset:
    """A dataset by name (``"synthetic"``, ``"baby"``, ``"tiktok"`` in ``$DGLMM_DATA`` or ``../shared/data``) or
    by path in any supported layout (MMRec, LATTICE json, KGAT, RecBole); ``options`` go to the reader, e.g.
    :func:`~dglmm.data.synthetic.make_synthetic`'s sizes.

    >>> data = dglmm.load_dataset("synthetic", n_users=200, n_items=300)   # doctest: +SKIP
    """
    from dglmm.data.readers import load_dataset as read

    return read(name_or_path, **options)


def build_graph(dataset: Dataset, **graph_options: Any) -> dgl.DGLGraph:
    """The dataset's heterograph (users, items, KG entities; kNN item graphs per modality) with the ``graph``
    options of a config (e.g. ``knn_k=10``); cached on disk like a training run's.

    >>> graph = dglmm.build_graph(data, knn_k=10)   # doctest: +SKIP
    """
    from dglmm.graph.build import GraphConfig
    from dglmm.graph.build import build_graph as build
    from dglmm.options import build as build_options

    return build(dataset, build_options(GraphConfig, graph_options, "graph"))


def describe(thing: Dataset | dgl.DGLGraph) -> str:
    """A readable summary of a dataset (counts, modalities, KG, cold items) or of a heterograph (its relations
    with edge counts).

    >>> print(dglmm.describe(data))   # doctest: +SKIP
    """
    if isinstance(thing, Dataset):
        from dglmm.data.dataset import format_summary

        return format_summary(thing.summary())
    from dglmm.graph.build import graph_summary

    return graph_summary(thing)


def model_names() -> list[str]:
    """The registered model names (``dglmm models`` lists them with their options).

    >>> "lightgcn" in dglmm.model_names()   # doctest: +SKIP
    """
    from dglmm.models import REGISTRY

    return sorted(REGISTRY)


def model_class(name: str) -> type:
    """The model class registered as ``name`` (``dglmm models`` lists them), e.g. to read its ``Config`` fields.

    >>> dglmm.model_class("micro").Config   # doctest: +SKIP
    """
    from dglmm.train.run import model_class as find

    return find(name)


def _override_list(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """``--set`` strings from strings or a ``{"train.lr": 1e-3}`` mapping (values written as JSON = YAML)."""
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for key, v in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _new_folder(out: Path, model: str, dataset: str) -> Path:
    """``out/<model>_<dataset>_<time>`` (``-2``, ``-3``... when two runs start in the same second)."""
    base = out / f"{model}_{dataset}_{time.strftime('%Y%m%d-%H%M%S')}"
    folder, number = base, 1
    while folder.exists():
        number += 1
        folder = base.with_name(f"{base.name}-{number}")
    return folder


def fit(model: str, dataset: str | Path | Dataset = "synthetic", *,
          overrides: Sequence[str] | Mapping[str, Any] = (), config_files: Sequence[str | Path] = (),
          seeds: int = 1, out: str | Path = "runs") -> Run:
    """Train ``model`` on ``dataset`` as ``dglmm train`` does and return the finished :class:`Run` (its model:
    the first seed's, ``seed0`` of the selected point; ``run.summary`` holds the mean and std over seeds).

    (Named ``fit`` because ``dglmm.train`` and ``dglmm.compare`` are the package's modules.)

    Args:
        model: a registered name (``dglmm models``), e.g. ``"lightgcn"``, ``"micro"``.
        dataset: a :class:`Dataset`, a known name or a path (see :func:`load_dataset`).
        overrides: ``--set`` values, as strings ``["train.lr=1e-3"]`` or a mapping ``{"train.lr": 1e-3}``; a list
            value sweeps a grid, selected on validation.
        config_files: YAML files merged after the packaged defaults (``-c``).
        seeds: runs of the selected point with seeds ``train.seed``, ``train.seed + 1``, ...
        out: parent folder; the run goes to ``out/<model>_<dataset>_<time>`` (:attr:`Run.folder`).

    >>> run = dglmm.fit("lightgcn", "synthetic", overrides={"train.epochs": 20}, seeds=2)   # doctest: +SKIP
    >>> run.metrics["recall@20"]                                                             # doctest: +SKIP
    """
    from dglmm.train.run import resolve_model_config, run_experiment

    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if int(seeds) < 1:
        raise InputError(f"seeds must be at least 1, got {seeds}")
    options = resolve_model_config(model, data.name, [str(c) for c in config_files], _override_list(overrides))
    folder = _new_folder(Path(out), model, data.name)
    summary = run_experiment(model, data, options, folder, seeds=int(seeds))
    return Run(folder, seed=0, dataset=data, summary=summary)


def load(path: str | Path, seed: int | None = None, dataset: str | Path | Dataset | None = None) -> Run:
    """Open a finished run folder: a seed's folder, the folder ``dglmm train`` prints (with ``seed*/``), or a
    grid's folder (its point selected on validation).

    Args:
        seed: which seed folder's model (``N`` of ``seedN``) when the folder holds several; None requires one.
        dataset: the dataset to rebuild the run on (default: the one recorded in ``config.yaml``); needed
            when the run was trained on an in-memory dataset, e.g. synthetic data with custom sizes.

    >>> run = dglmm.load("runs/lightgcn_synthetic_20260101-120000")   # doctest: +SKIP
    >>> run.evaluate("test")                                          # doctest: +SKIP
    """
    return Run(path, seed=seed, dataset=dataset)


class Run:
    """A finished run: its folder and results, and (loaded on first use) its dataset split, heterograph and
    best-validation model, ready to score.  Made by :func:`fit` or :func:`load`.

    Attributes:
        folder: the folder as given (a seed's, an experiment's or a grid's).
        run_dir: the single-seed folder whose model this object uses.
        seed_dirs: every seed folder of the run (of the selected point for a grid).
        model_name: the registered model name.
        results: that seed's ``results.json`` (``valid``, ``test``, ``best_epoch``, ...).
        summary: the experiment's ``summary.json`` (mean and std over seeds, the grid), or None.
    """

    def __init__(self, folder: str | Path, seed: int | None = None,
                 dataset: str | Path | Dataset | None = None, summary: dict | None = None) -> None:
        from dglmm.io import read_run_config, resolve_run_dir, seed_run_dirs

        self.folder = Path(folder)
        self.seed_dirs = seed_run_dirs(self.folder)
        named = [d for d in self.seed_dirs if d.name == f"seed{seed}"]
        if seed is None:
            self.run_dir = resolve_run_dir(self.folder)
        elif named or (seed == 0 and len(self.seed_dirs) == 1):
            self.run_dir = (named or self.seed_dirs)[0]
        else:
            raise InputError(f"{self.folder}: no seed{seed} (it holds {', '.join(d.name for d in self.seed_dirs)})")
        self._config = read_run_config(self.run_dir)
        self.model_name: str = self._config["model_name"]
        self.results = _finished_results(self.run_dir)
        self.summary = summary if summary is not None else _read_summary(self.folder)
        self._dataset_source = dataset

    def __repr__(self) -> str:
        metric = self.metrics.get("recall@20")
        shown = f", test recall@20 {metric:.4f}" if isinstance(metric, float) else ""
        return f"Run({self.model_name!r}, {str(self.run_dir)!r}{shown})"

    # -- results --------------------------------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, float]:
        """Test metrics of this seed's best-validation model (``results.json``)."""
        return dict(self.results["test"])

    @property
    def config(self) -> dict:
        """The options the run was made with (``config.yaml`` without model and dataset names)."""
        return {k: v for k, v in self._config.items() if k not in ("model_name", "dataset")}

    # -- the restored model ---------------------------------------------------------------------------------
    @cached_property
    def _prepared(self):
        from dglmm.io import load_checkpoint, load_model_state
        from dglmm.train.run import prepare_run

        source = self._dataset_source if self._dataset_source is not None else self._config.get("dataset")
        try:
            data = source if isinstance(source, Dataset) else load_dataset(source)
        except InputError as exc:
            if self._dataset_source is not None:
                raise
            raise InputError(f"{self.run_dir / 'config.yaml'}: its dataset {source!r} cannot be loaded ({exc}); "
                             "name it: dglmm.load(RUN, dataset=...) or -d DATASET") from None
        prepared = prepare_run(self.model_name, data, self.config)
        state = load_checkpoint(self.run_dir / "best.pt", map_location=prepared.trainer.device)
        load_model_state(prepared.model, state, self.run_dir / "best.pt", data.name)
        prepared.model.eval()
        return prepared

    @property
    def dataset(self) -> Dataset:
        """The dataset as the run saw it (after its split protocol, e.g. cold-start, and corruptions)."""
        return self._prepared.dataset

    @property
    def graph(self) -> dgl.DGLGraph:
        """The run's heterograph (on the run's device)."""
        return self._prepared.trainer.graph

    @property
    def model(self):
        """The best-validation model (``best.pt``, learned graphs included), in eval mode."""
        return self._prepared.model

    @cached_property
    def representations(self):
        """The model's final representations (``model(graph)`` once, without gradients)."""
        with torch.no_grad():
            return self.model(self.graph)

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Full-ranking metrics of the best model on ``split``, exactly as the run's own test computed them.

        >>> run.evaluate("valid")["ndcg@20"]   # doctest: +SKIP
        """
        return self._prepared.trainer.evaluate(split)

    def scores(self, users: Iterable | None = None) -> torch.Tensor:
        """The model's scores ``[len(users), n_items]`` (columns in dense item order, see
        ``run.dataset.id_map("item")``) of users given by their original ids (None: every user, a dense
        ``n_users x n_items`` block: for large data pass a subset, or use :meth:`top_k`); nothing masked.

        >>> run.scores(["0"]).shape   # doctest: +SKIP
        """
        dense = self._users(users)
        with torch.no_grad():
            return self.model.score(self.representations, torch.from_numpy(dense).to(self._prepared.trainer.device))

    def _users(self, users: Iterable | None) -> np.ndarray:
        if users is None:
            return np.arange(self.dataset.n_users)
        if isinstance(users, str | int | np.integer):
            users = [users]
        return self.dataset.id_map("user").encode(users)

    def top_k(self, users: Iterable | None = None, k: int = 20, include_seen: bool = False,
              chunk_size: int | None = None):
        """The top-``k`` of ``users`` (original ids; None: every user) as chunks of dense ids
        (:class:`dglmm.recommend.TopK`: ``users``, ``items``, ``scores``, ``kept``); :meth:`recommend` is the
        readable form.

        >>> for top in run.top_k(k=20):                        # doctest: +SKIP
        ...     items = run.representations.item[top.items]    # [chunk, 20, d]
        """
        from dglmm.recommend import check_k, topk_chunks
        from dglmm.train.evaluate import InteractionIndex

        data, trainer = self.dataset, self._prepared.trainer
        k = check_k(k, data.n_items)
        dense = self._users(users)
        exclude = None if include_seen else InteractionIndex.from_pairs(data.train, data.n_users, data.n_items)
        reps = self.representations
        return topk_chunks(lambda u: self.model.score(reps, u), dense, k, exclude,
                           chunk_size or trainer.config.eval_chunk_size, trainer.device)

    def recommend(self, users: Iterable | None = None, k: int = 20, include_seen: bool = False) -> pd.DataFrame:
        """Top-``k`` items of every user in ``users`` (the dataset's own ids; None: every user), best first.

        Training items are excluded unless ``include_seen``; a user with fewer than ``k`` unseen items gets
        fewer rows.  The ranking is the evaluator's (same scores, same tie rule: lower item id first).

        Returns:
            a DataFrame with columns ``user``, ``rank`` (from 1), ``item``, ``score`` in the dataset's ids.

        >>> run.recommend(users=["0", "1"], k=5)   # doctest: +SKIP
        """
        from dglmm.recommend import topk_frame

        users_map, items_map = self.dataset.id_map("user"), self.dataset.id_map("item")
        frames = [topk_frame(top, users_map, items_map) for top in self.top_k(users, k, include_seen)]
        if not frames:
            return pd.DataFrame({"user": [], "rank": [], "item": [], "score": []})
        return pd.concat(frames, ignore_index=True)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Final user and item vectors, float32 ``[n_users, d]`` and ``[n_items, d]`` (dense id order).
        Their inner product is the model's score when ``run.model.score_is_inner_product()``; otherwise see
        the model's ``export_note``.

        >>> user, item = run.embeddings()   # doctest: +SKIP
        >>> user[0] @ item.T                # user 0's scores when run.model.score_is_inner_product()
        """
        reps = self.representations
        return (reps.user.detach().float().cpu().numpy(), reps.item.detach().float().cpu().numpy())

    def export(self, out: str | Path) -> Path:
        """Write the user and item vectors as ``.npy`` with their id maps and ``export.json`` into ``out``
        (:func:`dglmm.recommend.export_vectors`); returns ``out``.

        >>> run.export("export/lightgcn")   # doctest: +SKIP
        """
        from dglmm.recommend import export_vectors

        user, item = self.embeddings()
        model = self.model
        inner = model.score_is_inner_product()
        data = self.dataset
        manifest = {
            "model": self.model_name, "run": str(self.run_dir), "dataset": data.name,
            "n_users": int(user.shape[0]), "n_items": int(item.shape[0]), "dim": int(item.shape[1]),
            "score_is_inner_product": inner,
            "score": "user_embeddings[u] . item_embeddings[i]" if inner else model.export_note,
            "cold_items": int(len(data.cold_items())),
            "files": {"user_embeddings.npy": "float32 [n_users, dim], row r = the user on line r of user_ids.txt",
                      "item_embeddings.npy": "float32 [n_items, dim], row r = the item on line r of item_ids.txt"},
        }
        return export_vectors(Path(out), user, item, data.id_map("user"), data.id_map("item"), manifest)

    # -- comparison -----------------------------------------------------------------------------------------
    @property
    def side(self) -> Path:
        """The folder :func:`compare_runs` reads: this seed's folder, or the folder of all its seeds."""
        return self.seed_dirs[0] if len(self.seed_dirs) == 1 else self.seed_dirs[0].parent


def _finished_results(run_dir: Path) -> dict:
    """``results.json`` of a run that finished (its test written), else an :class:`InputError`."""
    results = run_dir / "results.json"
    if not results.is_file() or not (run_dir / "best.pt").is_file():
        missing = "results.json" if not results.is_file() else "best.pt"
        raise InputError(f"{run_dir}: not a finished run (no {missing}); finish it with "
                         f"dglmm train -d DATASET --resume {run_dir}")
    try:
        return json.loads(results.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{results}: unreadable ({' '.join(str(exc).split())[:120]})") from None


def _read_summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def compare_runs(baseline: Run | str | Path, *others: Run | str | Path,
            metrics: Sequence[str] = ("recall@20", "ndcg@20", "precision@20")) -> pd.DataFrame:
    """Paired significance tests of every other run against ``baseline`` on the users both evaluate
    (:mod:`dglmm.compare`: Wilcoxon per user, t-test over seeds when both have several, effect size, 95% CI).

    Returns:
        one row per (run, metric): ``baseline``, ``value``, ``diff``, ``ci_low``, ``ci_high``, ``d_z``,
        ``p_wilcoxon``, ``p_ttest``, ``significant`` (p < 0.05).

    >>> dglmm.compare_runs(base, run)   # doctest: +SKIP
    """
    from dglmm.compare import compare_runs, label

    sides = [str(side.side if isinstance(side, Run) else side) for side in (baseline, *others)]
    results = compare_runs(sides, list(metrics))
    rows = [{"run": label(name), "metric": c.metric, "baseline": c.mean_a, "value": c.mean_b, "diff": c.diff,
             "ci_low": c.ci_low, "ci_high": c.ci_high, "d_z": c.effect, "p_wilcoxon": c.p_wilcoxon,
             "p_ttest": c.p_ttest, "significant": c.significant()}
            for name, comparisons in results.items() for c in comparisons]
    return pd.DataFrame(rows)
