"""Speed-up of data-parallel training: ``torchrun --nproc_per_node=P -m dglmm train`` for P = 1 and 2.

    python benchmarks/bench_distributed.py [-d baby] [-m lightgcn] [--epochs 4] [--threads 1]

Each configuration trains the same global batch (``train.batch_size``, default 2048) for ``--epochs`` epochs
with validation every epoch, then tests; reported: the median training seconds per epoch (from
``metrics.jsonl``, the first epoch left out as warm-up) and the run's wall time (start-up, validation every
epoch and the test included).  Every
process gets ``--threads`` intra-op threads (``OMP_NUM_THREADS``), so ``P x threads`` cores are used; the row
``1 x 2 threads`` is the fair single-process comparison on two cores.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run(processes: int, threads: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    sets = [f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "train.progress=false",
            f"train.patience={args.epochs}", f"train.checkpoint_every={args.epochs}"]
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", "-m", "dglmm", "train",
           "-m", args.model, "-d", args.dataset, "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    tic = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    (metrics,) = out.glob("*/seed0/metrics.jsonl")
    train = [json.loads(line)["train_seconds"] for line in metrics.read_text().splitlines()][1:]
    return {"train": statistics.median(train), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--dataset", default="baby")
    parser.add_argument("-m", "--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes, threads in [(1, args.threads), (1, 2 * args.threads), (2, args.threads)]:
            result = run(processes, threads, args, Path(tmp) / f"p{processes}t{threads}")
            rows.append((processes, threads, result))
            print(f"{processes} process(es) x {threads} thread(s): {result['train']:.2f} s per training epoch, "
                  f"run {result['wall']:.1f} s", flush=True)
    base, fair, two = (r[2] for r in rows)
    print(f"{args.model} on {args.dataset}, global batch {args.batch_size}: speed-up of 2 processes over 1 "
          f"(same threads per process) {base['train'] / two['train']:.2f}x per training epoch, "
          f"{base['wall'] / two['wall']:.2f}x wall; over 1 process with 2 threads (same cores) "
          f"{fair['train'] / two['train']:.2f}x per epoch, {fair['wall'] / two['wall']:.2f}x wall")


if __name__ == "__main__":
    main()
