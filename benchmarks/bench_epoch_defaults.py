"""One training epoch of every model with its default options, timed against LightGCN's on the same data.

    OMP_NUM_THREADS=1 python benchmarks/bench_epoch_defaults.py [-d tiktok] [--kg-dataset book-crossing]
        [--models ...] [--variant MODEL:KEY=VALUE[,KEY=VALUE] ...]

Each model is built as ``dglmm train -m MODEL -d DATASET`` builds it (the packaged config layers, nothing set),
its graph built or read from the cache outside the timing, then one epoch (every BPR batch, one optimiser step
each, no validation) is timed.  Prints seconds per epoch and the ratio to LightGCN's epoch measured in the same
process, which stays meaningful when the machine is shared; ``--variant`` adds rows with options set, e.g.
``--variant tmfun:model.cl_max_items=0`` for the setting whose cost a default avoids.  Models the data cannot
feed (KGAT and SLIF-MR without a knowledge graph) are timed on ``--kg-dataset`` against LightGCN's epoch on
that data.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time

import torch

from dglmm.data.readers import load_dataset
from dglmm.errors import InputError
from dglmm.models import REGISTRY
from dglmm.train.run import prepare_run, resolve_model_config

SLOW = 20.0  # an epoch over SLOW x LightGCN's is flagged: the default does not finish in reasonable time


def time_epoch(model: str, dataset, overrides: list[str]) -> tuple[float, float, int]:
    """(graph and model set-up seconds, epoch seconds, batches) of one epoch of ``model``."""
    tic = time.perf_counter()
    config = resolve_model_config(model, dataset.name, [], ["train.progress=false", *overrides])
    prepared = prepare_run(model, dataset, config)
    setup = time.perf_counter() - tic
    prepared.model.load_pretrained()
    tic = time.perf_counter()
    prepared.trainer.train_epoch(0)
    return setup, time.perf_counter() - tic, len(prepared.trainer.sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-d", "--dataset", default="tiktok", help="a known dataset name or a path")
    parser.add_argument("--kg-dataset", default="book-crossing",
                        help="data with a knowledge graph for the models the first data cannot feed ('' skips)")
    parser.add_argument("--models", nargs="+", default=sorted(REGISTRY), help="models to time")
    parser.add_argument("--variant", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="also time MODEL with these options (repeat for more rows)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    tic = time.perf_counter()
    dataset = load_dataset(args.dataset)
    print(f"data: {dataset.name}: {dataset.n_users} users x {dataset.n_items} items, {len(dataset.train)} "
          f"training interactions, modalities {sorted(dataset.modalities)} (read in "
          f"{time.perf_counter() - tic:.1f} s)", flush=True)
    rows = [(m, []) for m in dict.fromkeys(["lightgcn", *args.models])]
    for variant in args.variant:
        model, _, options = variant.partition(":")
        rows.append((model, options.split(",")))
    print(f"{'model':12s} {'options':28s} {'set-up s':>9s} {'epoch s':>9s} {'x LightGCN':>11s}  batches")
    skipped = time_rows(dataset, rows)
    if skipped and args.kg_dataset:
        kg_data = load_dataset(args.kg_dataset)
        print(f"\non {kg_data.name} ({kg_data.n_users} users x {kg_data.n_items} items, {len(kg_data.kg)} KG "
              "triples), the models the first data cannot feed:", flush=True)
        time_rows(kg_data, [("lightgcn", []), *skipped])


def time_rows(dataset, rows: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Print one line per row (the first row is the reference); returns the rows the data cannot feed."""
    base, skipped = None, []
    for model, overrides in rows:
        name = " ".join(overrides) or "defaults"
        try:
            setup, seconds, batches = time_epoch(model, dataset, overrides)
        except InputError as error:
            print(f"{model:12s} {name:28s} skipped: {error}", flush=True)
            skipped.append((model, overrides))
            continue
        base = base or seconds
        flag = f"  over {SLOW:g}x" if seconds / base > SLOW else ""
        print(f"{model:12s} {name:28s} {setup:9.1f} {seconds:9.2f} {seconds / base:10.1f}x  {batches}{flag}",
              flush=True)
    return skipped

if __name__ == "__main__":
    main()
