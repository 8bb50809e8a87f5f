"""Time and peak memory of the frozen-graph multimodal models (FREEDOM, and MGCN when registered) next to
LightGCN: one training epoch and one full evaluation, on TikTok and on Baby-sized data, one thread.

    python benchmarks/bench_mm_models.py                         # every (data, model) case, each in a new process
    python benchmarks/bench_mm_models.py --case tiktok freedom   # one case in this process

TikTok: ``../shared/data/tiktok`` (real 128-d image and audio features).  Baby-sized: the real Amazon Baby
interactions from ``../shared/data/baby`` (else a synthetic dataset of Baby's size) with random stand-in 4096-d
image and 384-d text features (``bench_engine.baby_with_paper_features``).  Every model runs with its defaults
and batch 2048 (the field's protocol); LightGCN with 2 layers, the user-item depth of both models; FREEDOM and
MGCN also with fixed raw features (their defaults fine-tune them, as their official code: Adam then updates the
whole feature matrices at every step).  The epoch
is a whole epoch through ``Trainer.train_epoch`` (FREEDOM's pruned graph is drawn in it); the evaluation ranks
every test user against every item.  Each case runs in its own process so that the peak resident memory
(``ru_maxrss``) is that case's.  ``OMP_NUM_THREADS=1`` is set for the child processes.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import baby_with_paper_features, trainer_for  # noqa: E402

from dglmm.data.readers import load_dataset  # noqa: E402
from dglmm.graph.build import GraphConfig, build_graph  # noqa: E402
from dglmm.models import REGISTRY  # noqa: E402

#: case -> (label, registered model, options); the first is the reference of the ratios
MODELS = {"lightgcn": ("LightGCN (2 layers)", "lightgcn", {"n_layers": 2}),
          "freedom": ("FREEDOM (defaults)", "freedom", {}),
          "freedom-fixed": ("FREEDOM, fixed features", "freedom", {"trainable_features": False}),
          "mgcn": ("MGCN (defaults)", "mgcn", {}),
          "mgcn-fixed": ("MGCN, fixed features", "mgcn", {"trainable_features": False})}


RESULT = "RESULT"  # the child's last line: epoch seconds, evaluation seconds, peak RSS MB


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_case(data: str, model: str) -> None:
    torch.set_num_threads(1)
    dataset = load_dataset("tiktok") if data == "tiktok" else baby_with_paper_features()
    graph = build_graph(dataset, GraphConfig(knn_k=10), cache_dir=False)
    label, name, options = MODELS[model]
    trainer = trainer_for(name, dataset, graph, **options)
    before = peak_mb()
    tic = time.perf_counter()
    trainer.train_epoch(0)
    epoch = time.perf_counter() - tic
    tic = time.perf_counter()
    trainer.evaluate("test")
    evaluation = time.perf_counter() - tic
    dims = " + ".join(f"{m} {f.shape[1]}-d" for m, f in sorted(dataset.modalities.items()))
    print(f"{data:6s} {label:24s} epoch {epoch:7.2f} s ({len(trainer.sampler)} batches of 2048)  "
          f"full evaluation {evaluation:6.2f} s  peak RSS {peak_mb():6.0f} MB (after data + graph + model "
          f"{before:5.0f} MB)  [{dataset.n_users} users x {dataset.n_items} items, {dims}]", flush=True)
    print(f"{RESULT} {epoch} {evaluation} {peak_mb()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=2, metavar=("DATA", "MODEL"))
    parser.add_argument("--datasets", nargs="+", default=["tiktok", "baby"], choices=["tiktok", "baby"])
    args = parser.parse_args()
    if args.case:
        run_case(*args.case)
        return
    models = [m for m, (_, name, _) in MODELS.items() if name in REGISTRY]
    missing = sorted({name for _, name, _ in MODELS.values() if name not in REGISTRY})
    print(f"torch {torch.__version__}, 1 thread per case; models: {', '.join(models)}"
          + (f" ({', '.join(missing)} not registered in this checkout)" if missing else ""), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for data in args.datasets:
        base = None
        for model in models:
            out = subprocess.run([sys.executable, __file__, "--case", data, model], check=True, env=env,
                                 capture_output=True, text=True).stdout.splitlines()
            print(*(line for line in out if not line.startswith(RESULT)), sep="\n")
            figures = [float(x) for x in next(line for line in out if line.startswith(RESULT)).split()[1:]]
            base = base or figures
            print(f"{'':6s} {'':24s} / LightGCN: epoch {figures[0] / base[0]:.2f}x, evaluation "
                  f"{figures[1] / base[1]:.2f}x, peak RSS {figures[2] / base[2]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
