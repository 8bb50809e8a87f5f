"""Recommending for every user against one full evaluation of the same model: time and peak memory.

Data: the synthetic generator at Amazon-Book size (70,000 users x 25,000 items, about 12 interactions per user,
no features or KG).  Model: an untrained MF or LightGCN (the cost of ranking does not depend on training).
Steps, each timed with its peak resident memory above the memory before it (Linux ``VmHWM``, reset between
steps through ``/proc/self/clear_refs``):

* ``evaluate``: ``Trainer.evaluate("test")``, the full-ranking test of a run (users with test items), timed
  after one untimed call (a warm-up that also counts the evaluated users);
* ``top-K``: :func:`dglmm.recommend.topk_chunks` over **every** user, training items masked, the same chunk size;
* ``top-K + CSV``: the same streamed into a CSV file in the dataset's ids, as ``dglmm recommend --out`` does.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_recommend.py [--model lightgcn] [--k 20]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dglmm.data.synthetic import make_synthetic
from dglmm.recommend import topk_chunks, write_recommendations
from dglmm.train.evaluate import InteractionIndex
from dglmm.train.run import prepare_run, resolve_model_config


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured(label: str, fn) -> tuple[float, float]:
    """Run ``fn``; print and return (seconds, peak RSS above the RSS before, MB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        print("(cannot reset the peak RSS: figures are the process's peak so far)")
    before = _status("VmRSS")
    tic = time.perf_counter()
    fn()
    seconds = time.perf_counter() - tic
    extra = _status("VmHWM") - before
    print(f"{label:14s} {seconds:7.2f} s   peak +{extra:7.1f} MB above {before:.0f} MB", flush=True)
    return seconds, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lightgcn", choices=["mf", "lightgcn"])
    parser.add_argument("--users", type=int, default=70_000)
    parser.add_argument("--items", type=int, default=25_000)
    parser.add_argument("--per-user", type=float, default=12.0, help="mean interactions per user")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()

    tic = time.perf_counter()
    data = make_synthetic(n_users=args.users, n_items=args.items, interactions_per_user=args.per_user,
                          modality_dims={}, kg=False)
    print(f"data: {data.n_users:,} users x {data.n_items:,} items, {len(data.train):,} training pairs "
          f"({time.perf_counter() - tic:.1f} s)")
    config = resolve_model_config(args.model, data.name, [], ["train.progress=false"])
    prepared = prepare_run(args.model, data, config, graph_cache=False)
    trainer, model = prepared.trainer, prepared.model.eval()
    chunk = trainer.config.eval_chunk_size
    print(f"model: {args.model} (untrained), d={model.config.embedding_dim}, chunk {chunk} users, "
          f"k={args.k}; full ranking")

    with torch.no_grad():
        reps = model(prepared.graph)
    train = InteractionIndex.from_pairs(prepared.dataset.train, data.n_users, data.n_items)

    def score(users):
        return model.score(reps, users)

    def top_k() -> None:
        for _ in topk_chunks(score, range_users, args.k, train, chunk):
            pass

    def top_k_csv() -> None:
        with tempfile.TemporaryDirectory() as folder:
            write_recommendations(Path(folder) / "recs.csv", topk_chunks(score, range_users, args.k, train, chunk),
                                  data.id_map("user"), data.id_map("item"), "csv")

    range_users = np.arange(data.n_users)
    evaluated = trainer.evaluate("test")["n_users"]
    eval_s, eval_mb = measured("evaluate", lambda: trainer.evaluate("test"))
    topk_s, topk_mb = measured("top-K", top_k)
    csv_s, csv_mb = measured("top-K + CSV", top_k_csv)
    print(f"evaluate ranks {evaluated:,} users, top-K ranks {data.n_users:,}; time per ranked user, top-K / "
          f"evaluate: {topk_s / data.n_users / (eval_s / evaluated):.2f}; total time top-K / evaluate "
          f"{topk_s / eval_s:.2f}, with CSV {csv_s / eval_s:.2f}; peak memory top-K / evaluate "
          f"{topk_mb / max(eval_mb, 1e-9):.2f}")


if __name__ == "__main__":
    main()
