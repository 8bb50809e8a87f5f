"""Command line: ``dglmm train | evaluate | compare | models | data info | data graph | demo``.

Every problem with the user's input (a malformed file, an unknown option or value, an unreadable checkpoint:
:class:`dglmm.errors.InputError`) is reported as one line ``dglmm: error: ...`` on stderr with exit status 2.
Anything else is a bug in dglmm: one line ``dglmm: internal error: ...`` and exit status 1.  ``--debug`` shows
the traceback of either.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from dglmm.errors import InputError, PeerFailure


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

    names = [args.name] if args.name else sorted(REGISTRY)
    for name in names:
        cls = model_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}")
        if args.name or args.verbose:
            for field, default, help_text in config_fields(cls):
                print(f"    {f'model.{field} = {default!r}':44s} {help_text}")


def cmd_train(args: argparse.Namespace) -> None:
    from dglmm.report import format_summary_table
    from dglmm.train import distributed
    from dglmm.train.run import resolve_model_config, run_experiment

    distributed.init_from_env({"backend": args.backend, "timeout": args.dist_timeout})  # under torchrun
    dataset = _load(args.dataset)
    if args.resume:
        return _resume(Path(args.resume), dataset)
    config = resolve_model_config(args.model, dataset.name, args.config or [], args.set or [])
    stamp = distributed.broadcast_object(time.strftime('%Y%m%d-%H%M%S'))  # one folder for every rank
    out = Path(args.out) / f"{args.model}_{dataset.name}_{stamp}"
    summary = run_experiment(args.model, dataset, config, out, seeds=args.seeds)
    if distributed.is_main():
        print(format_summary_table([summary]))
        print(f"run folder: {out}")
    distributed.shutdown()


def _resume(run_dir: Path, dataset) -> None:
    from dglmm.io import read_run_config
    from dglmm.train import distributed
    from dglmm.train.run import run_once

    config = read_run_config(run_dir)
    if not (run_dir / "checkpoint.pt").is_file():
        raise InputError(f"{run_dir / 'checkpoint.pt'}: not found (nothing to resume; train anew without --resume)")
    model_name = config.pop("model_name")
    config.pop("dataset", None)
    results = run_once(model_name, dataset, config, run_dir, resume=True)
    if distributed.is_main():
        print({k: round(v, 4) for k, v in results["test"].items()})
    distributed.shutdown()


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dglmm.io import read_run_config
    from dglmm.train.run import evaluate_run

    run_dir = Path(args.run_dir)
    read_run_config(run_dir)
    if not (run_dir / "best.pt").is_file():
        raise InputError(f"{run_dir / 'best.pt'}: not found (has the run finished a validated epoch?)")
    metrics = evaluate_run(run_dir, split=args.split, dataset_spec=args.dataset)
    for key, value in metrics.items():
        print(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")


def cmd_compare(args: argparse.Namespace) -> None:
    from dglmm.compare import compare_runs, format_comparisons, plot_comparisons

    if not 0.0 < args.alpha < 1.0:
        raise InputError(f"--alpha must be between 0 and 1 (exclusive), got {args.alpha}")
    results = compare_runs(args.runs, args.metrics)
    print(format_comparisons(args.runs[0], results, args.alpha))
    plot_comparisons(results, args.plot, args.alpha)
    print(f"plot: {args.plot}")


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
        doc = (model_class(model).__doc__ or "").strip().splitlines()[0]
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
    except KeyboardInterrupt:  # the running trial is marked failed; its slot is run again on resume
        print(f"dglmm: interrupted; finished trials are kept in the study's storage: run the same command, or "
              f"dglmm tune --resume {settings.folder}, to continue", file=sys.stderr)
        raise SystemExit(130) from None
    print(format_result(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dglmm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (grid over list values, several seeds)")
    train.add_argument("-m", "--model", required=True)
    train.add_argument("-d", "--dataset", default="synthetic", help="a known name or a path")
    train.add_argument("-c", "--config", action="append", help="YAML file(s) merged after the defaults")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.lr=1e-3")
    train.add_argument("--seeds", type=int, default=1)
    train.add_argument("--out", default="runs")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint.pt")
    train.add_argument("--backend", default="auto", help="under torchrun: 'gloo', 'nccl' or 'auto'")
    train.add_argument("--dist-timeout", type=float, default=600.0,
                       help="under torchrun: seconds a rank waits for the others before the run stops")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a run's best model")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", default="test", choices=["valid", "test"])
    evaluate.add_argument("-d", "--dataset", help="dataset path (default: the one in config.yaml)")
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser("compare", help="paired significance tests of runs against the first (baseline)")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or experiment folders with seed*/")
    compare.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20", "precision@20"])
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level of the * marks")
    compare.add_argument("--plot", default="compare.png", help="where to write the PNG")
    compare.set_defaults(func=cmd_compare)

    models = sub.add_parser("models", help="list models and their options")
    models.add_argument("name", nargs="?")
    models.add_argument("-v", "--verbose", action="store_true")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="dataset summary")
    info.add_argument("dataset")
    info.set_defaults(func=cmd_data_info)
    graph = data.add_parser("graph", help="build the heterograph and print its schema")
    graph.add_argument("dataset")
    graph.add_argument("--k", type=int, default=10)
    graph.add_argument("--norm", default="sym", choices=["sym", "rw", "none"])
    graph.add_argument("--symmetric", action="store_true")
    graph.add_argument("--no-cache", action="store_true")
    graph.set_defaults(func=cmd_data_graph)

    kg_check = data.add_parser("kg-check", help="permutation test: do items that share a KG entity share users?")
    kg_check.add_argument("dataset")
    kg_check.add_argument("--max-pairs", type=int, default=20_000, help="item pairs sampled per relation")
    kg_check.add_argument("--permutations", type=int, default=99, help="null draws with permuted item links")
    kg_check.add_argument("--seed", type=int, default=0)
    kg_check.set_defaults(func=cmd_data_kg_check)

    relink = data.add_parser("relink-movielens", help="re-key a RecBole MovieLens .link file (MovieLens-wide movie "
                                                      "ids) to the dataset's own items by title and year")
    relink.add_argument("dataset", help="RecBole dataset directory or .inter file (with .item and .link)")
    relink.add_argument("--movies", required=True, help="a MovieLens movies.dat (ML-1M) or movies.csv (ml-latest)")
    relink.add_argument("--out", required=True, help="directory for the re-linked copy")
    relink.add_argument("--min-similarity", type=float, default=0.8, help="fuzzy title match threshold")
    relink.set_defaults(func=cmd_data_relink)

    features = sub.add_parser("features", help="compute modality features").add_subparsers(
        dest="features_command", required=True)
    text = features.add_parser("text", help="text_feat.npy from item text with all-MiniLM-L6-v2 (dglmm[text])")
    text.add_argument("dataset")
    text.add_argument("--table", help="CSV/TSV with an item id column and text columns (default: the dataset's "
                                      "own item text, e.g. RecBole .item titles and genres)")
    text.add_argument("--id-column", default="item_id")
    text.add_argument("--text-columns", nargs="+")
    text.add_argument("--out", help="output file (default: text_feat.npy beside the data)")
    text.add_argument("--force", action="store_true", help="replace an existing text_feat.npy")
    text.add_argument("--batch-size", type=int, default=64)
    text.add_argument("--device", default="cpu")
    text.set_defaults(func=cmd_features_text)

    demo = sub.add_parser("demo", help="summarise the synthetic data and train a few models on it")
    demo.add_argument("--models", nargs="+", default=["lightgcn", "vbpr"])
    demo.add_argument("--epochs", type=int, default=60)
    demo.set_defaults(func=cmd_demo)

    tune = sub.add_parser("tune", help="hyper-parameter search on validation (Optuna), resumable, many workers",
                          description="Search the options that declare a space (dglmm models -v MODEL shows them) "
                          "with a seeded TPE sampler and pruning, select on validation only, then re-run the best "
                          "trial with --seeds seeds. Run the same command in more processes or hosts (same "
                          "--storage) to share the budget; run it again to resume.")
    tune.add_argument("-m", "--model")
    tune.add_argument("-d", "--dataset", default="synthetic", help="a known name or a path")
    tune.add_argument("--trials", type=int, help="trial budget, finished by all workers together")
    tune.add_argument("--seeds", type=int, default=3, help="seeds of the best trial's final runs (0: none)")
    tune.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="fix an option (train.lr=1e-3), search values (model.n_layers=[1,2,3]) or a range "
                           "(train.lr=1e-4..1e-2)")
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
    return parser


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
    except KeyboardInterrupt:
        print("dglmm: interrupted (the last completed epoch is in checkpoint.pt; continue with --resume)",
              file=sys.stderr)
        return 130
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
