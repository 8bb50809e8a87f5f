"""Time one SLIF-MR training epoch, its SGE rebuild included, on synthetic data of Amazon-Book's size.

    python benchmarks/bench_slifmr.py                       # every batch of one epoch, both L_inter settings
    python benchmarks/bench_slifmr.py --batches 5           # time 5 batches, extrapolate to the epoch

Data (SLIF-MR Table I): 70,679 users, 24,915 items, 846,434 interactions (80% in training), 686,516 KG triples
over 39 relations and 29,714 non-item entities (heads and tails drawn with Zipf-like popularity), stand-in
image (4096-d) and text (768-d) features stored on the graph.  The kNN relations ``similar_<m>`` (k = 10) are
random edges of the right size: their cosine construction is a one-off, cached preprocessing step, not part of
an epoch.  Settings: L_inter as written (all items are anchors and negatives, in chunks) or with sampled
anchors and negatives (``--sampled-anchors`` / ``--sampled-negatives``), each with the KG attention of eq. 11
computed in every batch (the default) or once per epoch (``+kg-epoch``: ``kg_attention_update=epoch``).
``--threads`` sets torch's intra-op threads (default: torch's own choice, the machine's cores).  Prints seconds
and the process's peak resident memory (``ru_maxrss``, which never decreases: the second setting's figure includes the first's).
Also prints the load average, since other jobs may share the CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch

from dglmm.data.dataset import Dataset
from dglmm.data.sampler import BPRSampler
from dglmm.graph.build import ITEM, GraphConfig, add_edge_type, build_graph, similar_etype
from dglmm.graph.knn import normalize_edge_weights
from dglmm.models import Batch, make_config
from dglmm.models.slifmr import SLIFMR

N_USERS, N_ITEMS, N_INTER, N_TRIPLES, N_REL, N_ENT = 70_679, 24_915, 846_434, 686_516, 39, 29_714
DIMS = {"image": 4096, "text": 768}
SETTINGS = ("as-written", "as-written+kg-epoch", "sampled", "sampled+kg-epoch")


def zipf(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** 0.8
    return rng.permutation(n)[rng.choice(n, size=size, p=weights / weights.sum())]


def amazon_book_sized(seed: int = 0) -> tuple[Dataset, object]:
    rng = np.random.default_rng(seed)
    keys = np.unique(zipf(rng, N_USERS, int(N_INTER * 1.1)).astype(np.int64) * N_ITEMS
                     + zipf(rng, N_ITEMS, int(N_INTER * 1.1)))[:N_INTER]
    pairs = np.stack([keys // N_ITEMS, keys % N_ITEMS], 1)
    pairs = pairs[rng.permutation(len(pairs))]
    cut1, cut2 = int(0.8 * len(pairs)), int(0.9 * len(pairs))
    heads = np.where(rng.random(N_TRIPLES) < 0.8, zipf(rng, N_ITEMS, N_TRIPLES), N_ITEMS + zipf(rng, N_ENT, N_TRIPLES))
    tails = N_ITEMS + zipf(rng, N_ENT, N_TRIPLES)
    kg = np.unique(np.stack([heads, rng.integers(N_REL, size=N_TRIPLES), tails], 1), axis=0)
    feats = {m: rng.standard_normal((N_ITEMS, d), dtype=np.float32) for m, d in DIMS.items()}
    dataset = Dataset("amazon-book-sized", N_USERS, N_ITEMS, pairs[:cut1], pairs[cut1:cut2], pairs[cut2:], feats,
                      n_entities=N_ENT, kg=kg, relation_names=[f"r{r}" for r in range(N_REL)], source="synthetic")
    graph = build_graph(dataset, GraphConfig(modalities=[]), cache_dir=False)
    for m, f in feats.items():  # stand-in kNN relations (k = 10 per item), sym-normalised, and the raw features
        dst = torch.arange(N_ITEMS).repeat_interleave(10)
        src = torch.randint(N_ITEMS, (len(dst),), generator=torch.Generator().manual_seed(1))
        sim = torch.rand(len(dst), generator=torch.Generator().manual_seed(2))
        graph = add_edge_type(graph, similar_etype(m), src, dst,
                              {"sim": sim, "w": normalize_edge_weights(src, dst, sim, N_ITEMS)})
        graph.nodes[ITEM].data[f"feat_{m}"] = torch.from_numpy(f)
    return dataset, graph


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_epoch(dataset: Dataset, graph, options: dict, batch_size: int, n_batches: int | None, lr: float) -> dict:
    torch.manual_seed(0)
    model = SLIFMR(dataset, graph, make_config(SLIFMR, options))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = BPRSampler(dataset.train, dataset.n_users, dataset.n_items, batch_size, seed=0)
    total = len(sampler)
    model.train()
    tic = time.perf_counter()
    model.on_epoch_start(1, graph)           # epoch 1: the pruned graphs of that epoch
    setup = time.perf_counter() - tic
    done, tic = 0, time.perf_counter()
    for index, (users, pos, neg) in enumerate(sampler):
        if n_batches is not None and index >= n_batches:
            break
        batch = Batch(users, pos, neg)
        model.on_batch_start(index)
        terms = model.loss(model.training_forward(graph, batch), batch)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()
        done += 1
    batches = time.perf_counter() - tic
    tic = time.perf_counter()
    model.on_epoch_end(0, graph)             # the SGE rebuild (eqs. 16-18)
    rebuild = time.perf_counter() - tic
    per_batch = batches / max(1, done)
    return {"batches_timed": done, "batches_per_epoch": total, "seconds_per_batch": per_batch,
            "rebuild_seconds": rebuild, "setup_seconds": setup,
            "epoch_seconds": setup + per_batch * total + rebuild, "extrapolated": done < total,
            "peak_rss_mb": peak_mb(), "correlate_edges": model.correlate.weight.numel()}


def time_projection(n_edges: int = 200_000, n_nodes: int = 50_000, n_rel: int = 79, dim: int = 64) -> None:
    """``W_r x`` for every edge end: ``dgl.ops.gather_mm`` (RelationAttention) vs :func:`relation_matmul`."""
    import dgl

    from dglmm.nn.relation_matmul import PairPlan, relation_matmul

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_nodes, dim, generator=gen, requires_grad=True)
    weights = torch.randn(n_rel, dim, dim, generator=gen, requires_grad=True)
    nodes = torch.randint(n_nodes, (n_edges,), generator=gen)
    rel = torch.randint(n_rel, (n_edges,), generator=gen)
    plan = PairPlan(nodes, rel, n_nodes, n_rel)
    runs = {"gather_mm": lambda: dgl.ops.gather_mm(x[nodes], weights, idx_b=rel),
            "relation blocks": lambda: relation_matmul(x, weights, plan)}
    for name, fn in runs.items():
        fn().sum().backward()
        tic = time.perf_counter()
        for _ in range(3):
            fn().sum().backward()
        print(f"{name:16s} {(time.perf_counter() - tic) / 3:.2f} s forward+backward ({n_edges} edges, {n_rel} "
              f"relations, {dim}x{dim}); load average {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4096, help="the paper's batch size")
    parser.add_argument("--batches", type=int, default=None, help="time this many batches and extrapolate")
    parser.add_argument("--sampled-anchors", type=int, default=4096)
    parser.add_argument("--sampled-negatives", type=int, default=4096)
    parser.add_argument("--projection", action="store_true",
                        help="only time W_r x (forward + backward) per edge with gather_mm against relation blocks")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--inter-precision", default="float32", choices=["float32", "bfloat16"],
                        help="model.cl_precision for every setting")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    if args.projection:
        time_projection()
        return
    tic = time.perf_counter()
    dataset, graph = amazon_book_sized()
    print(f"data: {dataset.n_users} users, {dataset.n_items} items, {len(dataset.train)} training interactions, "
          f"{len(dataset.kg)} triples / {len(dataset.relation_names)} relations, {dataset.n_entities} entities; "
          f"built in {time.perf_counter() - tic:.0f} s; peak RSS {peak_mb():.0f} MB", flush=True)
    sampled = {"cl_max_items": args.sampled_anchors, "cl_negatives": args.sampled_negatives}
    epoch_attention = {"kg_attention_update": "epoch"}
    common = {"cl_precision": args.inter_precision}
    settings = {"as-written": {}, "as-written+kg-epoch": epoch_attention, "sampled": sampled,
                "sampled+kg-epoch": {**sampled, **epoch_attention}}
    for name in args.settings:
        load = os.getloadavg()
        r = time_epoch(dataset, graph, {**settings[name], **common}, args.batch_size, args.batches, lr=1e-3)
        kind = f"extrapolated from {r['batches_timed']} batches" if r["extrapolated"] else "measured"
        print(f"{name} ({args.inter_precision}) epoch {r['epoch_seconds']:.0f} s ({kind}; "
              f"{r['batches_per_epoch']} batches x "
              f"{r['seconds_per_batch']:.2f} s + SGE rebuild {r['rebuild_seconds']:.1f} s + epoch-start hook "
              f"{r['setup_seconds']:.1f} s); peak RSS {r['peak_rss_mb']:.0f} MB; correlate edges "
              f"{r['correlate_edges']}; load average before {load[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
