"""Every registered model's synthetic-data test Recall@20 and NDCG@20 at a fixed seed and a short epoch budget.

A refactoring check: the table must not move (to 4 decimals) when code is reorganised without changing any
equation.  Options that a model's default may change between versions can be pinned with ``--set``.

    OMP_NUM_THREADS=1 python benchmarks/model_numbers.py --epochs 3 [--models micro,tmfun] [--set model.x=1]
"""

from __future__ import annotations

import argparse
import time

import torch

from dglmm.data.readers import load_dataset
from dglmm.models import REGISTRY
from dglmm.train.run import resolve_model_config, run_experiment

#: options pinned per model so that a changed default does not show up as drift
PINNED = {"micro": ["model.cl_max_items=0"], "tmfun": ["model.cl_max_items=0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default="", help="comma-separated names (default: every registered model)")
    parser.add_argument("--set", action="append", default=[], help="extra overrides for every model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("synthetic")
    names = args.models.split(",") if args.models else sorted(REGISTRY)
    print(f"{'model':10s} {'recall@20':>10s} {'ndcg@20':>10s} {'seconds':>8s}")
    for name in names:
        overrides = [f"train.epochs={args.epochs}", "train.progress=false", *PINNED.get(name, []), *args.set]
        options = resolve_model_config(name, data.name, [], overrides)
        started = time.time()
        summary = run_experiment(name, data, options, None, graph_cache=False)
        test = summary["test"]
        print(f"{name:10s} {test['recall@20']['mean']:10.4f} {test['ndcg@20']['mean']:10.4f} "
              f"{time.time() - started:8.1f}", flush=True)


if __name__ == "__main__":
    main()
