"""Print the test metrics of finished run folders and their mean ± std (dglmm's own aggregation).

    python benchmarks/summarise_runs.py LABEL=GLOB [LABEL=GLOB ...]

Each ``GLOB`` matches ``results.json`` files of single-seed runs (e.g. several ``dglmm train --seeds 1`` runs of
one configuration launched side by side with different ``train.seed``); runs still going are reported as such.
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

from dglmm.train.run import aggregate

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def main(argv: list[str]) -> None:
    for spec in argv:
        label, pattern = spec.split("=", 1)
        folders = sorted({Path(p).parent for p in glob.glob(pattern.replace("results.json", "metrics.jsonl"))})
        done = [json.loads((f / "results.json").read_text()) for f in folders if (f / "results.json").exists()]
        going = [str(f) for f in folders if not (f / "results.json").exists()]
        if done:
            stats = aggregate(done)
            cells = "  ".join(f"{m} {stats[m]['mean']:.4f} ± {stats[m]['std']:.4f}" for m in METRICS)
            epochs = ", ".join(str(r["best_epoch"]) for r in done)
            print(f"{label}: {len(done)} run(s) finished: {cells}; best epochs {epochs}")
        for folder in going:
            print(f"{label}: still running: {folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
