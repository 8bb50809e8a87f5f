"""What every paper recipe (``recipes/<paper>.py``) shares: running table rows, cells, the paper note, main.

A recipe is a dict of table functions ``name -> f(recipe) -> str``; each table runs its rows with
:meth:`Recipe.run` (a model plus ``--set`` overrides, grid-searched on validation, several seeds) and formats
them beside the paper's numbers.  :func:`recipe_main` parses the common command line, runs the chosen tables,
prints them and writes ``tables.txt`` and ``summaries.json`` into the output folder.  Every row's runs are
kept under ``<out>/runs/<table>-<row>`` (with their per-user test metrics), so that :func:`cell` can mark a
difference to a table's baseline row that is significant (``*``, :mod:`dglmm.compare`).  ``--resume FOLDER``
makes FOLDER the output folder and keeps every row already finished there with the same model, data, options
and seeds, so an interrupted recipe continues where it stopped, and two recipes started with different
``--only`` rows into one folder are gathered into one table by a last ``--resume`` run.  Under ``torchrun``
(``torchrun --standalone --nproc_per_node=2 recipes/micro.py ...``) every row trains data-parallel and only
rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dglmm.config import expand_grid, parse_override, sweep_axes
from dglmm.data.readers import load_dataset
from dglmm.errors import InputError
from dglmm.io import write_json, write_text
from dglmm.report import format_table, ordering_agreement
from dglmm.train import distributed
from dglmm.train.run import extend_experiment, model_sections, resolve_model_config, run_experiment

#: The rest of the recipe kit: ``from dglmm.recipe import format_table`` (each loaded on first use, so that
#: importing this module does not start matplotlib).  A recipe imports only ``dglmm`` and ``dglmm.recipe``.
KIT = {"format_table": "dglmm.report", "plt": "dglmm.plots", "plot_heatmaps": "dglmm.plots",
       "kg_alignment": "dglmm.data.kg_check", "verdict": "dglmm.data.kg_check", "ladder_rungs": "dglmm.models.camgr"}


def __getattr__(name: str):
    if name in KIT:
        import importlib

        return getattr(importlib.import_module(KIT[name]), name)
    raise AttributeError(f"module 'dglmm.recipe' has no attribute {name!r}")


class Recipe:
    """Runs rows (model + overrides) with several seeds and keeps their summaries."""

    def __init__(self, args: argparse.Namespace, n_tables: int) -> None:
        self.args = args
        self.dataset = load_dataset(args.dataset)
        tables = "-".join(args.tables) if len(args.tables) < n_tables else "all"
        tables += "".join(f"-{re.sub(r'[^A-Za-z0-9_.+=-]+', '_', label)}" for label in args.only or [])
        stamp = distributed.broadcast_object(time.strftime('%Y%m%d-%H%M%S'))  # one folder for every rank
        self.out = Path(args.resume) if args.resume else Path(args.out) / f"{self.dataset.name}-{tables}-{stamp}"
        self.summaries: dict[str, list[dict]] = {}

    def run(self, table: str, label: str, model: str, overrides: list[str]) -> dict | None:
        """Train one row (skipped, None, when ``--only`` does not name it); returns its summary."""
        if self.args.only and label not in self.args.only:
            return None
        if self.args.quick:  # a smoke run of every table: short training, the grid reduced to its lr axis
            sections = model_sections(model)
            overrides = [o for o in overrides if o.startswith("train.lr=") or not defines_sweep(o, sections)]
            overrides += [f"train.epochs={self.args.quick_epochs}", "train.patience=5"]
        sets = ["train.progress=false", *self.args.set, *overrides]
        config = resolve_model_config(model, self.dataset.name, self.args.config, sets)
        tic = time.time()
        run_dir = self.out / "runs" / re.sub(r"[^A-Za-z0-9_.+=-]+", "_", f"{table}-{label}")
        request = {"model": model, "dataset": self.dataset.name, "config": config, "seeds": self.args.seeds}
        summary = self.finished(run_dir, request, len(expand_grid(config, model_sections(model))) > 1)
        if summary is EXTEND:
            summary = extend_experiment(model, self.dataset, config, run_dir, self.args.seeds)
            if distributed.is_main():
                write_json(run_dir / "request.json", request)
        elif summary is None:
            if distributed.is_main():
                write_json(run_dir / "request.json", request)  # before training: what the folder holds
            summary = run_experiment(model, self.dataset, config, run_dir, seeds=self.args.seeds)
        summary.update(label=label, overrides=overrides, run_dir=str(run_dir))
        self.summaries.setdefault(table, []).append(summary)
        if distributed.is_main():
            print(f"  [{table}] {label:38s} R@20 {cell(summary, 'recall@20')}  ({time.time() - tic:.0f} s)",
                  flush=True)
            write_text(self.out / "summaries.json", json.dumps(self.summaries, indent=1, default=str))
        return summary


    def finished(self, run_dir: Path, request: dict, grid: bool) -> dict | None:
        """With ``--resume``: the summary of a row finished in ``run_dir`` with exactly ``request`` (model, data,
        resolved options, seeds); :data:`EXTEND` when its seed runs are to be continued from their checkpoints
        (the request only raises ``train.epochs`` or ``train.patience``, so they end as runs started with the
        larger budget would have; or the row was cut short); None when it has to run anew.  A folder made
        with other options is an error, so that a resumed table never mixes two settings."""
        if not self.args.resume or not (run_dir / "request.json").exists():
            return None
        try:
            made = json.loads((run_dir / "request.json").read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{run_dir / 'request.json'}: unreadable ({error}); resume into a new folder") from None
        now = json.loads(json.dumps(request, default=str))
        if made != now and not _longer_budget(made, now):
            raise InputError(f"--resume {self.out}: {run_dir.name} was run with other options than this row now "
                             f"has ({_first_difference(made, now)}); resume into a new folder")
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):  # cut short
            summary = None
        if made == now and (summary is not None or grid):
            return summary  # a grid cut short runs anew (its selection needs every point)
        return EXTEND


#: :meth:`Recipe.finished`'s answer for a finished row asked again with a larger epoch cap or patience
EXTEND = {"extend": True}
RAISABLE = ("epochs", "patience")


def _longer_budget(made: dict, now: dict) -> bool:
    """Whether ``now`` differs from ``made`` only by a larger ``train.epochs`` and/or ``train.patience``."""
    def without_budget(request: dict) -> dict:
        train = {k: v for k, v in request["config"].get("train", {}).items() if k not in RAISABLE}
        return {**request, "config": {**request["config"], "train": train}}

    before, after = made["config"].get("train", {}), now["config"].get("train", {})
    return without_budget(made) == without_budget(now) and all(
        k in before and k in after and after[k] >= before[k] for k in RAISABLE if k in before or k in after)


def _first_difference(made: object, now: object, key: str = "") -> str | None:
    """``key: was -> now`` of the first value that differs between two JSON trees (for the resume error)."""
    if isinstance(made, dict) and isinstance(now, dict):
        for sub in sorted(set(made) | set(now)):
            found = _first_difference(made.get(sub), now.get(sub), f"{key}.{sub}" if key else sub)
            if found:
                return found
        return None
    return None if made == now else f"{key}: {made!r} -> {now!r}"


def defines_sweep(override: str, sections: dict[str, type]) -> bool:
    """Whether ``section.key=value`` sweeps a grid (a list for a scalar option, a list of lists for a list
    option such as ``model.modalities``), as :func:`dglmm.config.sweep_axes` reads it."""
    section, key, value = parse_override(override, sections)
    return bool(sweep_axes({section: {key: value}}, sections)) if section in sections else False


def cell(summary: dict, metric: str, group: str = "test", baseline: dict | None = None) -> str:
    """``mean`` (one seed) or ``mean ± std`` of a metric in a recipe summary; with a ``baseline`` summary, a
    ``*`` when the test difference to it is significant (:func:`significance_mark`)."""
    stats = summary.get(group, {}).get(metric)
    if stats is None:
        return "-"
    text = f"{stats['mean']:.4f}" + (f" ± {stats['std']:.4f}" if len(summary["seeds"]) > 1 else "")
    return text + (significance_mark(summary, baseline, metric) if baseline and group == "test" else "")


def selected_runs(summary: dict) -> Path | None:
    """The folder of the selected grid point's seed runs of a recipe row (None when not kept)."""
    if "run_dir" not in summary:
        return None
    root = Path(summary["run_dir"])
    if len(summary.get("grid", [])) > 1:
        root = root / f"point{[g['point'] for g in summary['grid']].index(summary['selected'])}"
    return root


def compare_rows(summary: dict, baseline: dict, metrics: list[str]) -> list | None:
    """The paired comparisons (:class:`dglmm.compare.Comparison`, one per metric) of a recipe row's test results
    with a baseline row's; None for the baseline itself or when per-user results are not available."""
    from dglmm.compare import compare_sides, load_side

    a, b = selected_runs(baseline), selected_runs(summary)
    if a is None or b is None or a == b:
        return None
    try:
        return compare_sides(load_side(a, metrics), load_side(b, metrics), metrics)
    except InputError:
        return None


def significance_mark(summary: dict, baseline: dict, metric: str, alpha: float = 0.05) -> str:
    """``*`` when ``summary``'s per-user test ``metric`` differs significantly from ``baseline``'s (paired
    Wilcoxon over users, and the t-test over seeds when both have several); ``""`` otherwise, for the baseline
    itself, or when per-user results are not available."""
    results = compare_rows(summary, baseline, [metric])
    return "*" if results and results[0].significant(alpha) else ""


def _number(text: str) -> float | None:
    """The mean of a table cell (``0.0412``, ``0.0412 ± 0.0010*``); None for ``-`` or text."""
    try:
        return float(str(text).split()[0].rstrip("*"))
    except (ValueError, IndexError):
        return None


def _ranks(values: list[float]) -> list[int]:
    """Competition ranks, 1 = highest (ties share the better rank)."""
    return [1 + sum(other > v for other in values) for v in values]


def paper_table(head: list[str], rows: list[list[str]], metric: str = "R@20") -> str:
    """:func:`~dglmm.report.format_table` with the rank of each row by ``metric`` in dglmm's run and in the
    paper (the first column named ``paper <metric>...``), and a line saying whether the two orderings agree:
    the pairs of rows in the same order, Kendall's tau, and both best rows.  Rows without a paper number are
    left out of the comparison.  Without a paper column the table is returned as it is."""
    paper_col = next((i for i, h in enumerate(head) if h.startswith(f"paper {metric}")), None)
    if paper_col is None or metric not in head:
        return format_table(head, rows)
    ours_col = head.index(metric)
    pairs = [(i, _number(r[ours_col]), _number(r[paper_col])) for i, r in enumerate(rows)]
    pairs = [(i, a, b) for i, a, b in pairs if a is not None and b is not None]
    ours_rank = dict(zip([i for i, _, _ in pairs], _ranks([a for _, a, _ in pairs]), strict=True))
    paper_rank = dict(zip([i for i, _, _ in pairs], _ranks([b for _, _, b in pairs]), strict=True))
    ranked = [[*r, str(ours_rank.get(i, "-")), str(paper_rank.get(i, "-"))] for i, r in enumerate(rows)]
    table = format_table([*head, f"rank {metric}", f"paper rank {metric}"], ranked)
    n_label = next(i for i, h in enumerate(head) if "@" in h)  # the columns that name a row
    labels = [" ".join(c for c in rows[i][:n_label] if c) for i, _, _ in pairs]
    return table + "\n" + ordering_agreement(labels, [a for _, a, _ in pairs], [b for _, _, b in pairs], metric)


def reading_rows(model: str, dataset_name: str, files: list[str], sets: list[str],
                 only: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """``(label, overrides)`` of each alternative value of the model's reading options (declared
    ``reading=True``, :func:`dglmm.options.readings_of`): the values other than the option's value in the
    resolved config of ``files`` and ``sets``, leaving out options that have no effect there (e.g. the InfoNCE
    readings of a model whose contrastive term is off).  ``only``: these option names (``cl_items`` or
    ``model.cl_items``); an unknown name is an :class:`InputError`."""
    from dglmm.config import effective_options
    from dglmm.options import readings_of

    sections = model_sections(model)
    config = resolve_model_config(model, dataset_name, files, [s for s in sets if not defines_sweep(s, sections)])
    effective, inactive = effective_options(config, sections)
    readings = {f"{section}.{name}": values for section, cls in sections.items()
                for name, values in readings_of(cls).items()}
    wanted = {o if "." in o else f"model.{o}": o for o in only or []}
    unknown = [given for key, given in wanted.items() if key not in readings]
    if unknown:
        names = [key.removeprefix("model.") for key in readings]
        raise InputError(f"--readings {', '.join(unknown)}: not a reading option of {model} (its readings: "
                         f"{', '.join(names) or 'none'})")
    rows = []
    for key, values in readings.items():
        section, name = key.split(".", 1)
        if (wanted and key not in wanted) or key in inactive:
            continue
        current = effective[section][name]
        rows += [(f"{name}={_plain_value(v)}", [f"{key}={_plain_value(v)}"]) for v in values if v != current]
    return rows


def _plain_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def paper_note(recipe: Recipe, paper_family: tuple[str, ...] = ("baby", "sports", "clothing"),
               family_name: str = "Amazon") -> str:
    """Says whether the run's data is the paper's family of data, or other data (compare orderings only)."""
    name = recipe.dataset.name
    paper = f"{family_name} {recipe.args.paper_dataset.title()}"
    if name.lower().startswith(paper_family):
        return f"paper numbers: {paper} (same family of data)."
    return f"paper numbers: {paper}; this run is on {name!r}, other data: compare orderings, not values."


def recipe_parser(doc: str, tables: dict, paper_datasets: list[str], out: str) -> argparse.ArgumentParser:
    """The command line every recipe shares (a recipe may add its own arguments to it): the first line of the
    recipe's docstring ``doc`` describes it, and its paragraph that starts with ``Expected time:`` (what
    ``--quick`` took, measured) ends ``--help``."""
    from dglmm.report import HelpFormatter

    timing = [" ".join(p.replace("``", "").split()) for p in doc.split("\n\n")
              if p.strip().startswith("Expected time:")]
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], epilog=timing[0] if timing else None,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-d", "--dataset", default="synthetic", help="a known dataset name or a path")
    parser.add_argument("--tables", nargs="+", default=list(tables), choices=list(tables),
                        help="the tables and figures to regenerate")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each row's selected grid point")
    if paper_datasets:
        parser.add_argument("--paper-dataset", default=paper_datasets[0], choices=paper_datasets,
                            help="the paper's data whose numbers are printed beside dglmm's")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, short training, patience 5, grids over lr only")
    parser.add_argument("--quick-epochs", type=int, default=30, help="epoch cap of --quick")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="run only these rows (e.g. MICRO LightGCN)")
    parser.add_argument("-c", "--config", action="append", default=[], help="YAML file(s) for every row")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides for every row, one or more after each --set, e.g. train.patience=10")
    parser.add_argument("--out", default=out, help="folder in which the output folder is made")
    parser.add_argument("--resume", metavar="FOLDER",
                        help="use FOLDER as the output folder and keep the rows already finished in it")
    return parser


def recipe_main(title: str, parser: argparse.ArgumentParser, tables: dict[str, Callable[[Recipe], str]],
                argv: list[str] | None = None, note: Callable[[Recipe], str] = paper_note) -> int:
    """Parse, run the chosen tables in order, print them and write ``tables.txt``; returns the exit code."""
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = 1
    distributed.init_from_env()  # a no-op unless started by torchrun
    try:
        return _run_tables(title, args, tables, note)
    except InputError as error:  # a bad option, data set or resume folder: one line, as the CLI says it
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return distributed.leave(2)
    except KeyboardInterrupt:
        out = getattr(args, "out_folder", None)
        print(f"{parser.prog}: interrupted" + (f"; finished rows are kept: continue with the same command and "
                                                f"--resume {out}" if out else ""), file=sys.stderr)
        return distributed.leave(130)


def _run_tables(title: str, args: argparse.Namespace, tables: dict[str, Callable[[Recipe], str]],
                note: Callable[[Recipe], str]) -> int:
    main = distributed.is_main()
    recipe = Recipe(args, len(tables))
    args.out_folder = recipe.out
    if main:
        print(f"{title} recipe on {recipe.dataset.name}: {args.seeds} seed(s); {note(recipe)}\n"
              f"output folder: {recipe.out}", flush=True)
    outputs = []
    for name in args.tables:
        text = tables[name](recipe)
        if main:
            print("\n" + text + "\n", flush=True)
        outputs.append(text)
    if main:
        write_text(recipe.out / "tables.txt", note(recipe) + "\n\n" + "\n\n".join(outputs) + "\n")
        print(f"tables and summaries in {recipe.out}")
    distributed.shutdown()
    return distributed.leave(0)  # under torchrun: every rank exits cleanly
