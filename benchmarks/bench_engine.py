"""Time the engine on Baby-sized data: a training epoch, a full evaluation, the propagation backends, MICRO.

    python benchmarks/bench_engine.py [--repeats 5] [--micro-batches 10]

Uses the real Amazon Baby interactions from ../shared/data/baby when present (else a synthetic dataset of
Baby's size) with stand-in image (4096-d) and text (384-d) features of the papers' shapes.  Prints medians
and ratios; nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dglmm.data.dataset import Dataset
from dglmm.data.errors import DataError
from dglmm.data.readers import load_dataset
from dglmm.data.sampler import BPRSampler
from dglmm.data.synthetic import make_synthetic
from dglmm.graph.build import GraphConfig, build_graph
from dglmm.models import REGISTRY, Batch, make_config
from dglmm.nn.propagation import UserItemPropagation
from dglmm.train.trainer import TrainConfig, Trainer


def baby_with_paper_features() -> Dataset:
    try:
        dataset = load_dataset("baby")
    except DataError:
        return make_synthetic(baby_sized=True)
    rng = np.random.default_rng(0)
    dataset.modalities = {"image": rng.random((dataset.n_items, 4096), dtype=np.float32),
                          "text": rng.standard_normal((dataset.n_items, 384), dtype=np.float32)}
    return dataset


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def propagation_step(graph, backend: str, dim: int = 64, layers: int = 2):
    prop = UserItemPropagation(backend)
    user = torch.randn(graph.num_nodes("user"), dim, requires_grad=True)
    item = torch.randn(graph.num_nodes("item"), dim, requires_grad=True)

    def step():
        u, i = user, item
        for _ in range(layers):
            u, i = prop(graph, u, i)
        (u.sum() + i.sum()).backward()
    return step


def trainer_for(model_name: str, dataset: Dataset, graph, **options) -> Trainer:
    cls = REGISTRY[model_name]
    model = cls(dataset, graph, make_config(cls, options))
    return Trainer(model, graph, dataset, TrainConfig(batch_size=2048, progress=False))


def partial_epoch(trainer: Trainer, n_batches: int) -> float:
    """Seconds per batch over the first ``n_batches`` batches of an epoch (batch 0 rebuilds graphs)."""
    sampler = BPRSampler(trainer.dataset.train, trainer.dataset.n_users, trainer.dataset.n_items, 2048, seed=0)
    model, opt = trainer.model, trainer.optimizer
    model.train()
    model.on_epoch_start(0, trainer.graph)
    tic = time.perf_counter()
    for b, (u, i, j) in enumerate(sampler):
        if b == n_batches:
            break
        model.on_batch_start(b)
        batch = Batch(u, i, j)
        loss = sum(model.loss(model.training_forward(trainer.graph, batch), batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - tic) / n_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--micro-batches", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    dataset = baby_with_paper_features()
    tic = time.perf_counter()
    graph = build_graph(dataset, GraphConfig(knn_k=10), cache_dir=False)
    print(f"data: {dataset.name} {dataset.n_users} users x {dataset.n_items} items, {len(dataset.train)} train;"
          f" heterograph with 4096-d + 384-d kNN graphs built in {time.perf_counter() - tic:.2f} s")

    dgl_s = median_seconds(propagation_step(graph, "dgl"), args.repeats)
    csr_s = median_seconds(propagation_step(graph, "csr"), args.repeats)
    print(f"LightGCN propagation, 2 layers, 64-d, forward+backward: dgl multi_update_all {dgl_s * 1e3:.1f} ms, "
          f"csr {csr_s * 1e3:.1f} ms (dgl/csr = {dgl_s / csr_s:.2f}x)")

    light = trainer_for("lightgcn", dataset, graph)
    epoch_s = median_seconds(lambda: light.train_epoch(0), max(1, args.repeats // 2))
    eval_s = median_seconds(lambda: light.evaluate("test"), args.repeats)
    print(f"LightGCN (3 layers, csr) epoch: {epoch_s:.2f} s ({len(light.sampler)} batches of 2048);"
          f" full evaluation of {dataset.n_users} users: {eval_s:.2f} s")
    light_dgl = trainer_for("lightgcn", dataset, graph, backend="dgl")
    epoch_dgl = median_seconds(lambda: light_dgl.train_epoch(0), max(1, args.repeats // 2))
    print(f"LightGCN epoch with the dgl backend: {epoch_dgl:.2f} s (dgl/csr = {epoch_dgl / epoch_s:.2f}x)")

    batches = len(light.sampler)
    for label, options in [("LATTICE", {}), ("MICRO, InfoNCE over all items (eq. 9)", {"cl_max_items": 0}),
                           ("MICRO, InfoNCE over 1024 sampled items", {"cl_max_items": 1024})]:
        name = "lattice" if label == "LATTICE" else "micro"
        trainer = trainer_for(name, dataset, graph, **options)
        per_batch = partial_epoch(trainer, args.micro_batches)
        eval_m = median_seconds(lambda t=trainer: t.evaluate("test"), max(1, args.repeats // 2))
        print(f"{label}: {per_batch:.3f} s per batch -> about {per_batch * batches:.1f} s per epoch "
              f"({per_batch * batches / epoch_s:.1f}x LightGCN); evaluation {eval_m:.2f} s "
              f"(learned graphs rebuilt)")


if __name__ == "__main__":
    main()
