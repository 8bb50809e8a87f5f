"""Mean ± std over finished runs (their ``results.json``), e.g. seeds trained as separate commands.

    python benchmarks/summarize_runs.py 'runs/tmfun-p20/seed*' 'runs/tmfun-variants/att/*/seed0'

Each argument is a glob of run folders, or several joined by commas (one group); prints every run, then the group's mean ± std (population
std, as ``dglmm train --seeds``) of the test metrics and of the few-interaction items.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from dglmm.train.run import aggregate

METRICS = ("recall@20", "ndcg@20", "precision@20", "map@20")


def fmt(stats: dict, key: str) -> str:
    return f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}" if key in stats else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", help="glob(s) of run folders per group, comma-separated")
    for pattern in parser.parse_args().groups:
        runs = [(p, json.loads((Path(p) / "results.json").read_text())) for g in pattern.split(",")
                for p in sorted(glob.glob(g)) if (Path(p) / "results.json").exists()]
        print(f"{pattern}: {len(runs)} finished run(s)")
        for path, r in runs:
            print(f"  {path}: " + " ".join(f"{m} {r['test'][m]:.4f}" for m in METRICS)
                  + f" valid recall@20 {r['valid']['recall@20']:.4f} best epoch {r['best_epoch']}"
                  f" of {r['epochs_run']}")
        if runs:
            results = [r for _, r in runs]
            test = aggregate(results, "test")
            few = aggregate(results, "test_few") if all("test_few" in r for r in results) else {}
            print("  mean ± std: " + " ".join(f"{m} {fmt(test, m)}" for m in METRICS)
                  + f" | few-interaction items recall@20 {fmt(few, 'recall@20')} ndcg@20 {fmt(few, 'ndcg@20')}")


if __name__ == "__main__":
    main()
