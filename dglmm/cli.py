"""Command line of dglmm: train, evaluate and compare recommenders; list models and options; inspect data.

A run folder is what ``dglmm train`` prints (its ``seed*`` folders inside), one of its ``seed*`` folders, or a
grid's folder (standing for the point selected on validation): ``evaluate``, ``train --resume``, ``compare``,
``recommend`` and ``export`` accept each (:func:`dglmm.io.seed_run_dirs`).

Every problem with the user's input (a malformed file, an unknown option or value, an unreadable checkpoint:
:class:`dglmm.errors.InputError`) is reported as one line ``dglmm: error: ...`` on stderr with exit status 2.
Anything else is a bug in dglmm: one line ``dglmm: internal error: ...`` and exit status 1.  ``--debug`` shows
the traceback of either.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path

from dglmm.errors import InputError, PeerFailure
from dglmm.interrupts import exit_status, terminate_as_interrupt
from dglmm.report import HelpFormatter


def _load(spec: str):
    from dglmm.data.readers import load_dataset

    return load_dataset(spec)


def cmd_data_info(args: argparse.Namespace) -> None:
    from dglmm.data.dataset import format_summary

    print(format_summary(_load(args.dataset).summary()))


def cmd_data_graph(args: argparse.Namespace) -> None:
    from dglmm.graph.build import GraphConfig, build_graph, graph_summary
    from dglmm.options import build

    dataset = _load(args.dataset)
    config = build(GraphConfig, {"knn_k": args.k, "knn_norm": args.norm, "knn_symmetric": args.symmetric}, "graph")
    tic = time.perf_counter()
    graph = build_graph(dataset, config, cache_dir=False if args.no_cache else None)
    print(graph_summary(graph))
    print(f"built in {time.perf_counter() - tic:.2f} s")


def cmd_data_kg_check(args: argparse.Namespace) -> None:
    from dglmm.data.kg_check import kg_alignment, verdict

    dataset = _load(args.dataset)
    if dataset.kg is None or len(dataset.kg) == 0:
        raise InputError(f"{args.dataset}: the dataset has no knowledge graph")
    table = kg_alignment(dataset, permutations=args.permutations, max_pairs=args.max_pairs, seed=args.seed)
    if table.empty:
        raise InputError(f"{args.dataset}: no KG relation links two items through a shared entity")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    pooled = table.iloc[-1]
    print(f"{pooled['relation']}: ratio {pooled['ratio']:.2f}, permutation p {pooled['p']:.3f}: "
          f"{verdict(table, args.permutations)}")


def cmd_data_relink(args: argparse.Namespace) -> None:
    from dglmm.data.relink import relink_movielens

    report = relink_movielens(args.dataset, args.movies, args.out, args.min_similarity)
    print(report.summary())
    print(f"wrote {Path(args.out)}; check it with: dglmm data kg-check {args.out}")


def cmd_models(args: argparse.Namespace) -> None:
    from dglmm.models import REGISTRY
    from dglmm.models.base import config_fields
    from dglmm.train.run import model_class

    if args.yaml:
        from dglmm.config import model_layer_text
        if not args.name:
            raise InputError("--yaml prints one model's defaults as a config file: dglmm models NAME --yaml")
        cls = model_class(args.name)
        print(model_layer_text(args.name, cls.Config, summary_line(cls).rstrip(".")), end="")
        return
    names = [args.name] if args.name else sorted(REGISTRY)
    for name in names:
        cls = model_class(name)
        print(f"{name:12s} {summary_line(cls)}")
        if args.name or args.verbose:
            for field, default, help_text in config_fields(cls):
                print(_option_line(f"model.{field}", default, help_text))
    print("\ndata, graph and train options (every model): dglmm options; set any with --set section.key=value")


def summary_line(obj: object) -> str:
    """The first line of ``obj``'s docstring as plain text (reST roles and literals unmarked)."""
    first = ((obj.__doc__ or "").strip().splitlines() or [""])[0]
    return re.sub(r"(:[a-z]+:)?``?([^`]*)``?", r"\2", first)


def _option_line(key: str, default, help_text: str) -> str:
    return f"    {f'{key} = {default!r}':44s} {help_text}"


def cmd_options(args: argparse.Namespace) -> None:
    """Every option of the data, graph and train sections (and of a model with -m), with its default: the
    value a run gets before -c files and --set, after the layers shipped in dglmm/configs for -d."""
    from dglmm.config import PACKAGED_LAYERS, SECTIONS, packaged_files, packaged_layers, section_classes
    from dglmm.models.base import config_fields
    from dglmm.train.run import model_class

    cls = model_class(args.model) if args.model else None
    classes = section_classes(cls.Config if cls else None)
    shipped = packaged_layers(args.model or "", args.dataset) if args.dataset else {}
    wanted = args.sections or [s for s in SECTIONS if s != "model" or cls]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise InputError(f"unknown section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}")
    if "model" in wanted and cls is None:
        raise InputError("the model section depends on the model: dglmm options model -m NAME (dglmm models)")
    for section in wanted:
        title = f"the options of {args.model}" if section == "model" else summary_line(classes[section])
        print(f"{section}: {title}")
        for name, default, help_text in config_fields(cls if section == "model" else classes[section]):
            layered = shipped.get(section, {}).get(name, default)
            note = "" if layered == default else f" [dglmm/configs for {args.dataset}; built-in {default!r}]"
            print(_option_line(f"{section}.{name}", layered, help_text + note))
    shipped_files = {layer: packaged_files(layer) for layer in ("datasets", "models")}
    print("\nlayers, lowest priority first: " + " < ".join(
        f"dglmm/configs/{layer}" + (f" (shipped: {', '.join(shipped_files[kind]) or 'none'})"
                                    if (kind := layer.split('/')[0]) in shipped_files else "")
        for layer in PACKAGED_LAYERS) + " < -c FILE < --set section.key=value")


def cmd_train(args: argparse.Namespace) -> None:
    from dglmm.config import recorded_run
    from dglmm.report import format_summary_table
    from dglmm.train import distributed
    from dglmm.train.run import resolve_model_config, run_experiment

    distributed.init_from_env({"backend": args.backend, "timeout": args.dist_timeout})  # under torchrun
    if args.resume:
        return _resume(args)
    recorded = recorded_run(args.config or [])  # -c RUN/config.yaml: that run's model and data set
    args.model = args.model or recorded.get("model_name")
    if not args.model:
        raise InputError("train needs -m MODEL (dglmm models lists them), or --resume RUN_DIR")
    dataset = _load(args.dataset or recorded.get("dataset") or "synthetic")
    config = resolve_model_config(args.model, dataset.name, args.config or [], args.set or [])
    stamp = distributed.broadcast_object(time.strftime('%Y%m%d-%H%M%S'))  # one folder for every rank
    out = Path(args.out or "runs") / f"{args.model}_{dataset.name}_{stamp}"
    seeds = args.seeds or 1
    if distributed.is_main():
        print(f"run folder: {out} ({args.model} on {dataset.name}, {seeds} seed(s))", flush=True)
    summary = run_experiment(args.model, dataset, config, out, seeds=seeds)
    if distributed.is_main():
        print(format_summary_table([summary]))
        print(f"run folder: {out}")
    distributed.shutdown()


def _resume(args: argparse.Namespace) -> None:
    """Continue the run in ``args.resume`` with the model, dataset and options recorded in it."""
    from dglmm.io import read_run_config, resolve_run_dir
    from dglmm.report import format_summary_table
    from dglmm.train import distributed
    from dglmm.train.run import run_once, summarize_runs

    run_dir = resolve_run_dir(args.resume)
    config = read_run_config(run_dir)
    model_name, source = config.pop("model_name"), config.pop("dataset", None)
    config = _refuse_contradictions(args, run_dir, model_name, config)
    dataset = _resume_dataset(args, run_dir, source)
    if not (run_dir / "checkpoint.pt").is_file():
        raise InputError(f"{run_dir / 'checkpoint.pt'}: not found (nothing to resume; train anew without --resume)")
    if distributed.is_main():
        print(f"resuming {model_name} on {dataset.name} in {run_dir}", flush=True)
    results = run_once(model_name, dataset, config, run_dir, resume=True)
    if distributed.is_main():
        seed = int(config.get("train", {}).get("seed", 0))
        summary = {"model": model_name, "dataset": dataset.name, "selected": {},
                   **summarize_runs([results], [seed])}
        print(format_summary_table([summary]))
        print(f"run folder: {run_dir}")
    distributed.shutdown()


def _resume_dataset(args: argparse.Namespace, run_dir: Path, source: str | None):
    """The dataset recorded in the run folder; ``-d`` only when it names the same data (or the recorded path
    no longer exists, e.g. the data moved)."""
    if args.dataset is None:
        if source is None:
            raise InputError(f"{run_dir / 'config.yaml'}: records no dataset; name it with -d")
        return _load(source)
    dataset = _load(args.dataset)
    given = dataset.source or dataset.name
    moved = source is not None and source != "synthetic" and not Path(source).exists()
    if source is not None and not moved and not _same_data(given, source):
        raise InputError(f"--resume {run_dir}: the run trains on {source}; -d {args.dataset} contradicts it "
                         "(leave -d out to resume on the run's own data)")
    return dataset


def _same_data(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


RESUME_MAY_CHANGE = {("train", "progress"), ("train", "device"), ("train", "eval_chunk_size"),
                     ("train", "checkpoint_every")}  # how a run proceeds, not what it computes
RESUME_MAY_RAISE = {("train", "epochs"), ("train", "patience")}  # a longer budget continues exactly


def _refuse_contradictions(args: argparse.Namespace, run_dir: Path, model_name: str, config: dict) -> dict:
    """One line when -m, -c, --set, --seeds or --out asks for something other than what the run records;
    returns the run's config with the options of :data:`RESUME_MAY_CHANGE` that -c/--set give."""
    from dglmm.config import merge, parse_override, read_yaml
    from dglmm.options import build
    from dglmm.train.run import model_sections

    where = f"--resume {run_dir}"
    if args.model and args.model != model_name:
        raise InputError(f"{where}: the run trains {model_name}; -m {args.model} contradicts it (leave -m out)")
    for flag, value in (("--seeds", args.seeds), ("--out", args.out)):
        if value is not None:
            raise InputError(f"{where}: {flag} does not apply to resuming (a run folder is one seed, "
                             "continued where it is)")
    sections = model_sections(model_name)
    asked: dict = {}
    for path in args.config or []:
        asked = merge(asked, read_yaml(path))
    for text in args.set or []:
        section, key, value = parse_override(text, sections)
        asked.setdefault(section, {})[key] = value
    for section, values in asked.items():
        if section not in sections:
            raise InputError(f"{where}: unknown config section {section!r}")
        recorded = build(sections[section], config.get(section, {}), section)
        wanted = build(sections[section], {**config.get(section, {}), **values}, section)
        for key in values:
            if (section, key) in RESUME_MAY_CHANGE or (
                    (section, key) in RESUME_MAY_RAISE and getattr(wanted, key) >= getattr(recorded, key)):
                config = merge(config, {section: {key: values[key]}})
            elif getattr(recorded, key) != getattr(wanted, key):
                raise InputError(f"{where}: the run has {section}.{key}={getattr(recorded, key)!r}; "
                                 f"{section}.{key}={getattr(wanted, key)!r} contradicts it (a resumed run keeps "
                                 "its options, except train.epochs and train.patience, which may be raised: "
                                 "leave -c/--set out, or train anew)")
    return config


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dglmm.io import read_run_config, resolve_run_dir
    from dglmm.train.run import evaluate_run

    run_dir = resolve_run_dir(args.run_dir)
    read_run_config(run_dir)
    if run_dir != Path(args.run_dir):
        print(f"run: {run_dir}")
    if not (run_dir / "best.pt").is_file():
        raise InputError(f"{run_dir / 'best.pt'}: not found (has the run finished a validated epoch?)")
    metrics = evaluate_run(run_dir, split=args.split, dataset_spec=args.dataset)
    for key, value in metrics.items():
        print(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")


def cmd_compare(args: argparse.Namespace) -> None:
    from dglmm.compare import compare_runs, default_plot_path, format_comparisons, plot_comparisons

    if not 0.0 < args.alpha < 1.0:
        raise InputError(f"--alpha must be between 0 and 1 (exclusive), got {args.alpha}")
    results = compare_runs(args.runs, args.metrics)
    print(format_comparisons(args.runs[0], results, args.alpha))
    plot = Path(args.plot) if args.plot else default_plot_path(args.runs)
    plot_comparisons(results, plot, args.alpha, baseline=args.runs[0])
    print(f"plot: {plot}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dglmm.data.dataset import format_summary
    from dglmm.graph.build import build_graph, graph_summary
    from dglmm.report import format_summary_table
    from dglmm.train.evaluate import evaluate_popularity
    from dglmm.train.run import model_class, resolve_model_config, run_experiment

    dataset = _load("synthetic")
    print(format_summary(dataset.summary()), "\n")
    print(graph_summary(build_graph(dataset)), "\n")
    summaries = []
    for index, model in enumerate(args.models, start=1):
        config = resolve_model_config(model, dataset.name, [], [f"train.epochs={args.epochs}", "train.patience=10"])
        doc = summary_line(model_class(model))
        print(f"[{index}/{len(args.models)}] training {model} on {dataset.name} for up to {args.epochs} epochs "
              f"(early stopping on validation {config['train'].get('metric', 'recall@20')}): {doc}", flush=True)
        summaries.append(run_experiment(model, dataset, config, None, seeds=1))
    print(format_summary_table(summaries))
    popularity = evaluate_popularity(dataset)
    print(f"popularity ranker (reference): recall@20 {popularity['recall@20']:.4f}, "
          f"ndcg@20 {popularity['ndcg@20']:.4f}")


def cmd_features_text(args: argparse.Namespace) -> None:
    from dglmm.data.text_features import write_text_features

    dataset = _load(args.dataset)
    table = {} if args.table is None else {"table": Path(args.table), "id_column": args.id_column,
                                           "text_columns": args.text_columns}
    tic = time.perf_counter()
    path = write_text_features(dataset, Path(args.out) if args.out else None, force=args.force,
                               batch_size=args.batch_size, device=args.device,
                               progress=sys.stderr.isatty(), **table)
    print(f"wrote {path} ({dataset.n_items} items x 384, all-MiniLM-L6-v2) in {time.perf_counter() - tic:.1f} s")


def _read_user_ids(spec: str) -> list[str]:
    """``--users``: a file with one id per line (blank lines and ``#`` comments skipped), else ids split at
    commas."""
    path = Path(spec)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read user ids ({type(exc).__name__})") from None
        ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    elif "," not in spec and ("/" in spec or path.suffix in (".txt", ".csv", ".tsv", ".list")):
        raise InputError(f"--users {spec}: no such file")
    else:
        ids = [part.strip() for part in spec.split(",") if part.strip()]
    if not ids:
        raise InputError(f"--users {spec!r}: no user ids (a file with one id per line, or ids separated by commas)")
    return ids


def cmd_recommend(args: argparse.Namespace) -> None:
    from dglmm.api import Run
    from dglmm.recommend import check_writable, encode_chunks, output_format, write_recommendations

    out = Path(args.out) if args.out else None
    fmt = output_format(out, args.format)
    users = _read_user_ids(args.users) if args.users else None
    if out is not None:
        check_writable(out)
    run = Run(args.run, seed=args.seed, dataset=args.dataset)
    chunks = run.top_k(users, args.k, include_seen=args.include_seen)
    maps = run.dataset.id_map("user"), run.dataset.id_map("item")
    if out is None:
        for data in encode_chunks(chunks, *maps, fmt):
            sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    write_recommendations(out, chunks, *maps, fmt)
    print(f"wrote {out} ({fmt}, top-{args.k} of {run.dataset.n_users if users is None else len(users)} users, "
          f"model {run.model_name} of {run.run_dir})", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from dglmm.api import Run
    from dglmm.recommend import check_writable

    run = Run(args.run, seed=args.seed, dataset=args.dataset)
    out = Path(args.out) if args.out else run.run_dir / "export"
    check_writable(out, directory=True)  # before the model is rebuilt
    run.export(out)
    user, item = run.embeddings()
    inner = run.model.score_is_inner_product()
    print(f"wrote {out}: user_embeddings.npy {user.shape}, item_embeddings.npy {item.shape}, user_ids.txt, "
          f"item_ids.txt, export.json; score = {'inner product' if inner else 'NOT an inner product (export.json)'}")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run folder, ``--seed`` and ``-d`` of ``recommend`` and ``export``."""
    parser.add_argument("run", help="a run folder (a seed's, the one train prints, or a grid's)")
    parser.add_argument("--seed", type=int, help="which seed folder (N of seedN) when the folder holds several")
    parser.add_argument("-d", "--dataset", help="dataset name or path (default: the one in config.yaml)")


def cmd_tune(args: argparse.Namespace) -> None:
    """``dglmm tune``: Optuna search on validation, then the best trial with --seeds seeds (dglmm.tune)."""
    from dglmm.tune import TuneSettings, format_result, load_settings, tune

    if args.resume:
        settings = load_settings(Path(args.resume))
    else:
        if not args.model:
            raise InputError("dglmm tune needs -m MODEL (or --resume FOLDER)")
        settings = TuneSettings(
            model=args.model, dataset=args.dataset, trials=args.trials, seeds=args.seeds, overrides=args.set or [],
            study=args.study, storage=args.storage, out=args.out, pruner=args.pruner,
            prune_startup_trials=args.prune_startup_trials, prune_warmup_epochs=args.prune_warmup_epochs,
            startup_trials=args.startup_trials, stale_after=args.stale_after)
    if args.trials is not None and args.resume:
        settings.trials = args.trials
    if settings.trials is None:
        raise InputError("dglmm tune needs --trials N (the budget: trials finished by all workers together)")
    dataset = _load(settings.dataset)
    try:
        result = tune(settings, dataset)
    except KeyboardInterrupt:  # the running trial is marked failed and enqueued to continue from its checkpoint
        print(f"dglmm: interrupted; finished trials are kept in the study's storage and the running one continues "
              f"from its last epoch: run the same command, or dglmm tune --resume {settings.folder}, to continue",
              file=sys.stderr)
        raise SystemExit(exit_status()) from None
    print(format_result(result))


def cmd_leaderboard(args: argparse.Namespace) -> None:
    """``dglmm leaderboard``: every model on every data set with one tuning budget, and its page."""
    from dglmm.leaderboard import DEFAULT_OUT, command_line, leaderboard

    shown = [*(["--spec", args.spec] if args.spec else []), *(["--out", args.out] if args.out != DEFAULT_OUT else []),
             *(["--workers", str(args.workers)] if args.workers != 1 else []),
             *(["--page", args.page] if args.page != "docs/results.md" else [])]
    try:
        counts = leaderboard(args.spec, args.out, args.page, args.readme or None, args.workers, args.datasets,
                             args.models, args.page_only, not args.quiet, command_line(shown))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers were stopped (dglmm.leaderboard.runner)
        print("dglmm: interrupted; finished studies, trials and seeds are kept: run the same command to "
              "continue", file=sys.stderr)
        raise SystemExit(exit_status()) from None
    print(f"page: {args.page} ({counts['studies']} studies"
          + (f"; this run: {counts['done']} finished, {counts['failed']} failed" if "done" in counts else "") + ")")
    print(counts["status"])


def build_parser() -> argparse.ArgumentParser:
    from dglmm import __version__

    parser = argparse.ArgumentParser(prog="dglmm", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"dglmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="train a model (grid over list values, several seeds)",
                           description="Train a model: a grid over every list value of -c/--set, each point "
                                       "with the first seed, the best on validation with the others. Prints "
                                       "the run folder first and again with the test results.",
                           formatter_class=HelpFormatter)
    train.add_argument("-m", "--model", help="the model to train (dglmm models lists them); with --resume or "
                                             "-c RUN/config.yaml, read from the run folder")
    train.add_argument("-d", "--dataset", help="a known name (synthetic, or a folder in $DGLMM_DATA or "
                                               "../shared/data) or a path (default: synthetic; with --resume or "
                                               "-c RUN/config.yaml, the run's own)")
    train.add_argument("-c", "--config", action="append", help="YAML file(s) merged after the defaults; a run "
                                                               "folder's config.yaml also gives its model and data "
                                                               "set (train it again, e.g. with other seeds)")
    train.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                       help="overrides, one or more after each --set, e.g. train.lr=1e-3 model.n_layers=[1,2] "
                            "(a list sweeps a grid); every option: dglmm options")
    train.add_argument("--seeds", type=int, help="seeds of the selected grid point, from train.seed up; the "
                                                 "test metrics are their mean ± std (default: 1)")
    train.add_argument("--out", help="folder in which the run folder <model>_<dataset>_<time> is made "
                                     "(default: runs)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run from its checkpoint.pt (the folder train printed, or one "
                            "seed* in it) with the model, data and options it records; only train.progress, "
                            "device, eval_chunk_size and checkpoint_every may be --set anew")
    train.add_argument("--backend", default="auto", help="under torchrun: 'gloo', 'nccl' or 'auto'")
    train.add_argument("--dist-timeout", type=float, default=600.0,
                       help="under torchrun: seconds a rank waits for the others before the run stops")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a run's best model", formatter_class=HelpFormatter)
    evaluate.add_argument("run_dir", help="the folder train printed (one seed), or one seed* folder in it")
    evaluate.add_argument("--split", default="test", choices=["valid", "test"], help="the split to rank")
    evaluate.add_argument("-d", "--dataset", help="dataset path (default: the one in config.yaml)")
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser("compare", help="paired significance tests of runs against the first (baseline)",
                             formatter_class=HelpFormatter)
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="run folders as train prints them (all their seeds), or single seed* folders")
    compare.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20", "precision@20"],
                         help="test metrics to compare")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level of the * marks")
    compare.add_argument("--plot", help="where to write the PNG (default: compare-<A>-vs-<B>.png in the "
                                        "folder that holds the runs)")
    compare.set_defaults(func=cmd_compare)

    models = sub.add_parser("models", help="list models and their options", formatter_class=HelpFormatter)
    models.add_argument("name", nargs="?", help="one model: its options with their defaults")
    models.add_argument("-v", "--verbose", action="store_true", help="every model's options")
    models.add_argument("--yaml", action="store_true", help="print the model's defaults as a config file (what "
                        "dglmm/configs/models/NAME.yaml ships; copy it and pass it with -c)")
    models.set_defaults(func=cmd_models)

    options = sub.add_parser("options", help="every data, graph and train option with its default (and a "
                                             "model's with -m)", formatter_class=HelpFormatter)
    options.add_argument("sections", nargs="*", metavar="SECTION",
                         help="data, graph, model or train (default: all; model needs -m)")
    options.add_argument("-m", "--model", help="also the options of this model")
    options.add_argument("-d", "--dataset", help="show the defaults dglmm/configs ships for this dataset")
    options.set_defaults(func=cmd_options)

    data = sub.add_parser("data", help="inspect datasets", formatter_class=HelpFormatter).add_subparsers(
        dest="data_command", required=True)
    info = data.add_parser("info", help="dataset summary", formatter_class=HelpFormatter)
    info.add_argument("dataset", help="a known name or a path")
    info.set_defaults(func=cmd_data_info)
    graph = data.add_parser("graph", help="build the heterograph and print its schema",
                            formatter_class=HelpFormatter)
    graph.add_argument("dataset", help="a known name or a path")
    graph.add_argument("--k", type=int, default=10, help="neighbours per item in the kNN feature graphs")
    graph.add_argument("--norm", default="sym", choices=["sym", "rw", "none"], help="kNN edge normalisation")
    graph.add_argument("--symmetric", action="store_true", help="symmetrise the kNN graphs")
    graph.add_argument("--no-cache", action="store_true", help="build anew, neither read nor write the cache")
    graph.set_defaults(func=cmd_data_graph)

    kg_check = data.add_parser("kg-check", help="permutation test: do items that share a KG entity share users?",
                               formatter_class=HelpFormatter)
    kg_check.add_argument("dataset", help="a dataset with a knowledge graph (name or path)")
    kg_check.add_argument("--max-pairs", type=int, default=20_000, help="item pairs sampled per relation")
    kg_check.add_argument("--permutations", type=int, default=99, help="null draws with permuted item links")
    kg_check.add_argument("--seed", type=int, default=0, help="seed of the samples and permutations")
    kg_check.set_defaults(func=cmd_data_kg_check)

    relink = data.add_parser("relink-movielens", help="re-key a RecBole MovieLens .link file (MovieLens-wide movie "
                                                      "ids) to the dataset's own items by title and year",
                             formatter_class=HelpFormatter)
    relink.add_argument("dataset", help="RecBole dataset directory or .inter file (with .item and .link)")
    relink.add_argument("--movies", required=True, help="a MovieLens movies.dat (ML-1M) or movies.csv (ml-latest)")
    relink.add_argument("--out", required=True, help="directory for the re-linked copy")
    relink.add_argument("--min-similarity", type=float, default=0.8, help="fuzzy title match threshold")
    relink.set_defaults(func=cmd_data_relink)

    features = sub.add_parser("features", help="compute modality features",
                              formatter_class=HelpFormatter).add_subparsers(
        dest="features_command", required=True)
    text = features.add_parser("text", help="text_feat.npy from item text with all-MiniLM-L6-v2 (dglmm[text])",
                               formatter_class=HelpFormatter)
    text.add_argument("dataset", help="a known name or a path")
    text.add_argument("--table", help="CSV/TSV with an item id column and text columns (default: the dataset's "
                                      "own item text, e.g. RecBole .item titles and genres)")
    text.add_argument("--id-column", default="item_id", help="--table's column of item ids")
    text.add_argument("--text-columns", nargs="+", help="--table's columns joined into each item's text "
                                                        "(default: every other column)")
    text.add_argument("--out", help="output file (default: text_feat.npy beside the data)")
    text.add_argument("--force", action="store_true", help="replace an existing text_feat.npy")
    text.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")
    text.add_argument("--device", default="cpu", help="torch device of the encoder")
    text.set_defaults(func=cmd_features_text)

    demo = sub.add_parser("demo", help="summarise the synthetic data and train a few models on it",
                          formatter_class=HelpFormatter)
    demo.add_argument("--models", nargs="+", default=["lightgcn", "vbpr"], help="models to train")
    demo.add_argument("--epochs", type=int, default=60, help="epoch cap (early stopping after 10 evaluations "
                                                             "without improvement)")
    demo.set_defaults(func=cmd_demo)
    recommend = sub.add_parser(
        "recommend", help="top-K items per user from a finished run, in the dataset's own ids",
        description="Top-K items per user from a run's best model: the evaluator's full-ranking scores, training "
                    "items excluded (unless --include-seen), ties to the lower item id; users and items in the "
                    "dataset's own ids (RecBole tokens; MMRec, LATTICE and KGAT integer ids).  Output: CSV "
                    "(user,rank,item,score) or JSON lines ({user, items, scores}).  Cold items (no training "
                    "interaction) are ranked too; their scores carry information for the models whose item "
                    "representations use content: VBPR, LATTICE, MICRO, FREEDOM, TMFUN, MGCN, CAmgr, SLIF-MR (features) "
                    "and KGAT (knowledge graph), not for MF, LightGCN and NGCF (an untrained ID embedding).")
    _run_arguments(recommend)
    recommend.add_argument("--users", metavar="FILE|IDS",
                           help="a file with one user id per line, or ids separated by commas (default: every user)")
    recommend.add_argument("-k", type=int, default=20, help="items per user (at most the catalogue size)")
    recommend.add_argument("--include-seen", action="store_true", help="do not exclude the training items")
    recommend.add_argument("--out", metavar="FILE", help="output file (default: stdout); .jsonl -> JSON lines")
    recommend.add_argument("--format", choices=["csv", "jsonl"], help="default: from --out's suffix, else csv")
    recommend.set_defaults(func=cmd_recommend)

    export = sub.add_parser(
        "export", help="final user and item vectors (.npy) and id maps, for a nearest-neighbour index",
        description="Write user_embeddings.npy [n_users, d], item_embeddings.npy [n_items, d] (float32), "
                    "user_ids.txt and item_ids.txt (row r = the id on line r) and export.json.  For every model "
                    "the score is the inner product of the two vectors, except TMFUN with attention=user (its "
                    "default): its per-(user, item) attention term is not a product of two vectors, the exported "
                    "item vectors are the user-independent part, good for retrieving candidates to re-rank "
                    "with dglmm recommend (export.json says which holds).")
    _run_arguments(export)
    export.add_argument("--out", metavar="DIR", help="output folder (default: RUN/export)")
    export.set_defaults(func=cmd_export)

    tune = sub.add_parser("tune", help="hyper-parameter search on validation (Optuna), resumable, many workers",
                          description="Search the options that declare a space (dglmm models -v MODEL shows them) "
                          "with a seeded TPE sampler and pruning, select on validation only, then re-run the best "
                          "trial with --seeds seeds. Run the same command in more processes or hosts (same "
                          "--storage) to share the budget; run it again to resume.")
    tune.add_argument("-m", "--model", help="the model to tune (dglmm models lists them); with --resume, read from "
                                            "the study")
    tune.add_argument("-d", "--dataset", default="synthetic", help="a known name or a path")
    tune.add_argument("--trials", type=int, help="trial budget, finished by all workers together")
    tune.add_argument("--seeds", type=int, default=3, help="seeds of the best trial's final runs (0: none)")
    tune.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                      help="fix an option (train.lr=1e-3), search values (model.n_layers=[1,2,3]) or a range "
                           "(train.lr=1e-4..1e-2); one or more after each --set")
    tune.add_argument("--study", help="study name (default MODEL-DATASET); also the folder under --out")
    tune.add_argument("--storage", help="journal file path or RDB URL (sqlite:///f.db, postgresql://...); "
                                        "default: journal.log in the study folder")
    tune.add_argument("--out", default="runs/tune", help="parent of the study folder")
    tune.add_argument("--resume", metavar="FOLDER", help="continue the study recorded in FOLDER/study.yaml")
    tune.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"],
                      help="pruning on the best validation metric so far ('none': off)")
    tune.add_argument("--prune-startup-trials", type=int, default=5, help="finished trials before pruning starts")
    tune.add_argument("--prune-warmup-epochs", type=int, default=10, help="epochs of a trial never pruned")
    tune.add_argument("--startup-trials", type=int, default=10, help="random trials before TPE models the space")
    tune.add_argument("--stale-after", type=float, default=3600.0,
                      help="seconds without heartbeat after which another host's running trial counts as dead")
    tune.set_defaults(func=cmd_tune)

    board = sub.add_parser(
        "leaderboard", help="every model on every data set, one tuning budget: docs/results.md (resumable)",
        description="For each data set and model of the specification, dglmm tune with the board's one budget and "
                    "the best trial re-run with several seeds; finished studies and seeds are kept, so running the "
                    "command again resumes. After every study docs/results.md (a table and a PNG per data set, "
                    "unfinished rows 'pending', the answers to the specification's questions) and the README's "
                    "extract are rewritten.")
    board.add_argument("--spec", help="the board's YAML specification (default: dglmm/configs/leaderboard.yaml)")
    board.add_argument("--out", default="runs/board", help="parent of the study folders (<out>/<data set>/<model>)")
    board.add_argument("--workers", type=int, default=1, help="studies run at the same time, each in a process of its own (0: one after the other in this "
                            "process; the peak memory is then this process's maximum so far)")
    board.add_argument("--datasets", nargs="+", metavar="KEY",
                       help="run only these data sets' studies now, in this order (the page still shows every data set)")
    board.add_argument("--models", nargs="+", metavar="MODEL",
                       help="run only these models' studies now, in this order within a data set (the page still shows every row)")
    board.add_argument("--page", default="docs/results.md", help="the page to write (PNGs in <page stem>/)")
    board.add_argument("--readme", default="README.md",
                       help="README whose 'results at a glance' block is rewritten ('' : none)")
    board.add_argument("--page-only", action="store_true", help="write the page from the study folders, run nothing")
    board.add_argument("--quiet", action="store_true", help="no line per trial, only a line per study")
    board.set_defaults(func=cmd_leaderboard)
    return parser


class Parser(argparse.ArgumentParser):
    """A parser whose help shows defaults (:class:`HelpFormatter`), given to ``add_subparsers`` so that every
    sub-command gets it, also one added without ``formatter_class``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    code = _run(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: a clean exit of every rank
        from dglmm.train import distributed

        return distributed.leave(code)
    return code


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        with terminate_as_interrupt():  # `kill PID` stops a command as Ctrl-C does (dglmm.interrupts)
            args.func(args)
    except InputError as error:
        if args.debug:
            raise
        print(f"dglmm: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except PeerFailure as error:  # under torchrun: another rank failed; this one stops with one line
        if args.debug:
            raise
        print(f"dglmm: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a reader that stopped early (`dglmm compare ... | head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 0
    except KeyboardInterrupt as error:
        run_dir = getattr(error, "run_dir", None)
        if run_dir is not None:
            print(f"dglmm: interrupted; the last completed epoch is in {run_dir / 'checkpoint.pt'}: continue "
                  f"with: dglmm train --resume {run_dir}", file=sys.stderr)
        else:
            print("dglmm: interrupted" + (" before an epoch completed (nothing to resume)"
                                          if args.command == "train" else ""), file=sys.stderr)
        return exit_status()
    except Exception as error:  # noqa: BLE001 - a bug, not an input problem: say so in one line
        if args.debug:
            raise
        print(f"dglmm: internal error: {type(error).__name__}: {_one_line(error)} "
              "(run again with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
