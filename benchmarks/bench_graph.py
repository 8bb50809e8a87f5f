"""Time heterograph construction: TikTok (real data), a Baby-sized random dataset, cache loads, add_edge_type.

Run: ``.venv/bin/python benchmarks/bench_graph.py [--data ../shared/data]``.  Targets: TikTok < 10 s,
Baby-sized < 30 s (cache disabled).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dglmm.data.dataset import Dataset
from dglmm.graph import GraphConfig, add_edge_type, build_graph, graph_summary


def load_tiktok(folder: Path) -> Dataset:
    """``dglmm.data.readers.load_dataset`` when it exists, else a minimal MMRec-layout reader."""
    try:
        from dglmm.data.readers import load_dataset
    except ImportError:
        load_dataset = None
    if load_dataset is not None:
        return load_dataset(folder)
    print("(dglmm.data.readers.load_dataset not available: using the local MMRec reader)")
    inter = np.loadtxt(folder / "tiktok.inter", delimiter="\t", skiprows=1, dtype=np.int64)
    pairs, label = inter[:, :2], inter[:, 4]
    feats = {m: np.load(folder / f"{m}_feat.npy").astype(np.float32) for m in ("image", "audio")}
    return Dataset(name="tiktok", n_users=int(pairs[:, 0].max()) + 1, n_items=len(feats["image"]),
                   train=pairs[label == 0], valid=pairs[label == 1], test=pairs[label == 2],
                   modalities=feats, source=str(folder))


def baby_sized(seed: int = 0) -> Dataset:
    """19,445 users x 7,050 items, 120k unique training pairs, 4096-d image and 384-d text stand-ins."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 19_445, 7_050
    flat = rng.choice(n_users * n_items, size=120_000, replace=False)
    train = np.stack([flat // n_items, flat % n_items], axis=1).astype(np.int64)
    feats = {"image": rng.random((n_items, 4096), dtype=np.float32),
             "text": rng.standard_normal((n_items, 384), dtype=np.float32)}
    return Dataset(name="baby-sized", n_users=n_users, n_items=n_items, train=train, modalities=feats)


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<56} {time.perf_counter() - start:8.3f} s")
    return out


def bench(ds: Dataset, target: float, cache: Path) -> None:
    config = GraphConfig(knn_k=10)
    start = time.perf_counter()
    g = build_graph(ds, config, cache_dir=False)
    took = time.perf_counter() - start
    print(f"{ds.name + ': build, cache disabled':<56} {took:8.3f} s  (target < {target:.0f} s)")
    timed(f"{ds.name}: build + write cache", build_graph, ds, config, cache_dir=cache)
    timed(f"{ds.name}: load from cache (key hash + read)", build_graph, ds, config, cache_dir=cache)
    src = torch.randint(0, ds.n_items, (120_000,))
    dst = torch.randint(0, ds.n_items, (120_000,))
    timed(f"{ds.name}: add_edge_type 120k (item, correlate, item)", add_edge_type, g,
          ("item", "correlate", "item"), src, dst, {"w": torch.rand(120_000)})
    print(graph_summary(g), end="\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        tiktok = args.data / "tiktok"
        if (tiktok / "tiktok.inter").is_file():
            bench(timed("tiktok: load dataset", load_tiktok, tiktok), 10.0, Path(tmp))
        else:
            print(f"skipping TikTok: {tiktok} not found")
        bench(timed("baby-sized: generate random dataset", baby_sized), 30.0, Path(tmp))
        from dglmm.data.synthetic import make_synthetic

        timed("make_synthetic(baby_sized=True): planted clusters, features, KG", make_synthetic, baby_sized=True)


if __name__ == "__main__":
    main()
