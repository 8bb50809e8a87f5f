"""Graph operations shared by the graph builder and the models: symmetric degree weights, degree-sensitive
pruning and the average of two weighted graphs.

:func:`degree_weights` is ``1 / sqrt(d_src d_dst)`` per edge: LightGCN's normalisation of the interaction graph
(the builder's ``interact`` weights, SLIF-MR's pruned graph) and FREEDOM's keep weight.

Degree-sensitive edge pruning (FREEDOM, Zhou & Shen MM'23; SLIF-MR eq. 6): every edge ``e = (m, n)`` gets the keep weight ``p_e = 1 / (sqrt(d_m) sqrt(d_n))`` (eq. 6): edges between
popular nodes are dropped more often.  :func:`prune_edges` keeps ``round((1 - ratio) * E)`` edges drawn without
replacement with probabilities proportional to ``p_e`` (``torch.multinomial``, as FREEDOM's code), from a
``torch.Generator`` the caller seeds, so a pruned graph is a deterministic function of (edges, ratio, seed):
models re-derive it from a seed instead of storing it.  Returns kept edge ids in increasing order.
:func:`prune_interactions` applies it to user-item pairs and returns LightGCN's weights of the kept graph.
"""

from __future__ import annotations

import torch


def degree_weights(src: torch.Tensor, dst: torch.Tensor, n_nodes: int | None = None,
                   n_dst: int | None = None) -> torch.Tensor:
    """``1 / sqrt(d_src d_dst)`` per edge (float32, computed in float64): LightGCN's symmetric normalisation and
    FREEDOM's keep weight ``p_e`` (SLIF-MR eq. 6).

    With ``n_dst`` None, ``src`` and ``dst`` index one node set of ``n_nodes`` nodes and a node's degree counts
    the edges at either end (an undirected edge list, e.g. KG triples); with ``n_dst`` given, the two ends are
    separate node sets (users and items) of sizes ``n_nodes`` and ``n_dst``.
    """
    src, dst = src.long(), dst.long()
    if n_dst is None:
        n = int(n_nodes if n_nodes is not None else max(int(src.max()), int(dst.max())) + 1) if len(src) else 0
        deg = torch.bincount(src, minlength=n) + torch.bincount(dst, minlength=n)
        d_src, d_dst = deg[src], deg[dst]
    else:
        d_src = torch.bincount(src, minlength=n_nodes or 0)[src]
        d_dst = torch.bincount(dst, minlength=n_dst)[dst]
    return (d_src.double() * d_dst.double()).rsqrt().float()


def prune_edges(weights: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ids of the ``round((1 - ratio) E)`` edges kept, drawn without replacement proportionally to ``weights``."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    n = len(weights)
    keep = int(round((1.0 - ratio) * n))
    if ratio == 0.0 or n == 0:
        return torch.arange(n, device=weights.device)
    # Exponential-race sampling (what torch.multinomial does without replacement), kept explicit so that
    # more than 2^24 edges are allowed: the top-``keep`` of ``w / Exp(1)`` is a weighted sample w/o replacement.
    race = torch.empty(n, dtype=torch.float64).exponential_(1.0, generator=generator).to(weights.device)
    chosen = (weights.double() / race).topk(keep).indices
    return chosen.sort().values


def prune_interactions(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, ratio: float,
                       generator: torch.Generator | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Degree-sensitive pruning of user-item pairs and LightGCN's weights of the pruned graph: the kept
    ``(users, items)`` (:func:`prune_edges` with keep weights :func:`degree_weights` of the full graph, in
    their original order) and ``1 / sqrt(d_u d_i)`` with the degrees counted on the pruned graph (FREEDOM's
    normalisation of ``A_rho``; SLIF-MR eqs. 6-7)."""
    keep = prune_edges(degree_weights(users, items, n_users, n_items), ratio, generator).to(users.device)
    users, items = users[keep], items[keep]
    return users, items, degree_weights(users, items, n_users, n_items)


def pruning_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for ``(seed, stream)`` (stream = epoch, or 0 for prune-once), independent of the
    global RNG so that pruning never shifts the run's other random draws."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(stream))


def average_graphs(old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...],
                   n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(G_old + G_new) / 2`` on the union of their edges, each graph ``(src, dst, weight)`` over ``n`` nodes
    (SLIF-MR's ``sge_mode="keep"``); the result's edges are sorted by ``(dst, src)``."""
    src = torch.cat([old[0], new[0]])
    dst = torch.cat([old[1], new[1]])
    weight = torch.cat([old[2], new[2]]) * 0.5
    key, inverse = torch.unique(dst * n + src, return_inverse=True)
    merged = weight.new_zeros(len(key)).index_add_(0, inverse, weight)
    return key % n, key // n, merged

