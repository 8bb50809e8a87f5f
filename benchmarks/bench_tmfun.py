"""Time TMFUN next to LightGCN: one training epoch and one full evaluation, on TikTok and on Baby-sized data.

    python benchmarks/bench_tmfun.py [--repeats 1] [--datasets tiktok baby]

TikTok: ``../shared/data/tiktok`` (real 128-d image and audio features).  Baby: the real Amazon Baby
interactions from ``../shared/data/baby`` (else a synthetic dataset of Baby's size) with stand-in 4096-d image
and 384-d text features (``bench_engine.baby_with_paper_features``).  Every model trains with batch 2048, as
in the runs of docs/models/tmfun.md; TMFUN with its defaults (LightGCN backbone, 2 layers) and its InfoNCE over
1,024 sampled items (``cl_max_items``, as the TikTok runs); ``--rows`` adds the all-item InfoNCE of eq. 8 and
TMFUN-att.  Prints medians; the first row is the reference of the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import baby_with_paper_features, median_seconds, trainer_for  # noqa: E402

from dglmm.data.readers import load_dataset  # noqa: E402
from dglmm.graph.build import GraphConfig, build_graph  # noqa: E402

ROWS = {"lightgcn": ("LightGCN (2 layers)", "lightgcn", {"n_layers": 2}),
        "tmfun": ("TMFUN, eq. 8 over 1,024 sampled items", "tmfun", {"cl_max_items": 1024}),
        "tmfun-all": ("TMFUN, eq. 8 over all items", "tmfun", {"cl_max_items": 0}),
        "tmfun-att": ("TMFUN-att (no attention)", "tmfun", {"cl_max_items": 1024, "variant": "tmfun-att"})}


def bench(name: str, repeats: int, rows: list[str]) -> None:
    dataset = load_dataset("tiktok") if name == "tiktok" else baby_with_paper_features()
    tic = time.perf_counter()
    graph = build_graph(dataset, GraphConfig(knn_k=10), cache_dir=False)
    dims = ", ".join(f"{m} {f.shape[1]}-d" for m, f in dataset.modalities.items())
    print(f"{dataset.name}: {dataset.n_users} users x {dataset.n_items} items, {len(dataset.train)} train, {dims};"
          f" graph built in {time.perf_counter() - tic:.2f} s")
    base = None
    for label, model, options in (ROWS[r] for r in rows):
        trainer = trainer_for(model, dataset, graph, **options)
        epoch = median_seconds(lambda t=trainer: t.train_epoch(0), repeats)
        evaluation = median_seconds(lambda t=trainer: t.evaluate("test"), repeats)
        base = base or epoch
        print(f"  {label:40s} epoch {epoch:6.2f} s ({len(trainer.sampler)} batches, {epoch / base:4.1f}x LightGCN);"
              f" full evaluation {evaluation:5.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats after one warm-up (median)")
    parser.add_argument("--datasets", nargs="+", default=["tiktok", "baby"], choices=["tiktok", "baby"])
    parser.add_argument("--rows", nargs="+", default=["lightgcn", "tmfun"], choices=list(ROWS),
                        help="models timed (tmfun-all: the all-item InfoNCE of eq. 8, O(n_items^2 d) per batch)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.datasets:
        bench(name, args.repeats, args.rows)


if __name__ == "__main__":
    main()
