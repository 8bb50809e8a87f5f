"""Time and peak memory of CAmgr: one training epoch and one full evaluation, on TikTok and Baby-sized data.

    python benchmarks/bench_camgr.py                      # every (data, token set) case, each in a fresh process
    python benchmarks/bench_camgr.py --case tiktok all    # one case in this process

A case is a data set and ``channels`` (the default ``attention_axis``) or a token set of ``attention_axis=nodes``
(``sampled``: 1,024 keys per forward; ``all``: every node, chunked).

Each case runs in its own process so that the peak resident memory (``ru_maxrss``) is that case's.  Baby-sized
data are the real Baby interactions with stand-in 4096-d image and 384-d text features (as bench_engine.py).
With ``--batches N`` (default: every batch) the epoch time is the mean over the first N batches times the
number of batches of an epoch, and said so.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import baby_with_paper_features, partial_epoch, trainer_for  # noqa: E402

from dglmm.data.readers import load_dataset  # noqa: E402
from dglmm.graph.build import GraphConfig, build_graph  # noqa: E402

CASES = [("tiktok", "channels"), ("tiktok", "sampled"), ("tiktok", "all"), ("baby", "channels"), ("baby", "sampled"),
         ("baby", "all")]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_case(data: str, token_set: str, batches: int) -> None:
    dataset = load_dataset("tiktok") if data == "tiktok" else baby_with_paper_features()
    graph = build_graph(dataset, GraphConfig(knn_k=10), cache_dir=False)
    options = ({"attention_axis": "channels"} if token_set == "channels"   # the default: d x d over every node
               else {"attention_axis": "nodes", "token_set": token_set})
    trainer = trainer_for("camgr", dataset, graph, **options)
    before = peak_mb()
    n_batches = len(trainer.sampler)
    used = n_batches if batches <= 0 else min(batches, n_batches)
    per_batch = partial_epoch(trainer, used)
    tic = time.perf_counter()
    trainer.evaluate("test")
    evaluation = time.perf_counter() - tic
    n_tokens = dataset.n_users + dataset.n_items
    dims = "+".join(f"{m} {f.shape[1]}-d" for m, f in sorted(dataset.modalities.items()))
    how = "measured" if used == n_batches else f"extrapolated from {used} of {n_batches} batches"
    case = "attention over channels" if token_set == "channels" else f"attention over nodes, token_set={token_set}"
    print(f"{data} ({dataset.n_users} users + {dataset.n_items} items = {n_tokens} tokens; {dims}), "
          f"{case}: epoch {per_batch * n_batches:.1f} s ({how}; {per_batch:.2f} s per batch of "
          f"2048), full evaluation {evaluation:.1f} s; peak RSS {peak_mb():.0f} MB (after data + graph + model: "
          f"{before:.0f} MB); an N x N float32 matrix would be {n_tokens ** 2 * 4 / 2 ** 20:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=2, metavar=("DATA", "CHANNELS_OR_TOKEN_SET"))
    parser.add_argument("--batches", type=int, default=0, help="batches timed per epoch (0: the whole epoch)")
    args = parser.parse_args()
    if args.case:
        run_case(*args.case, args.batches)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for data, token_set in CASES:
        subprocess.run([sys.executable, __file__, "--case", data, token_set, "--batches", str(args.batches)],
                       check=True)


if __name__ == "__main__":
    main()
