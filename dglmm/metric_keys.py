"""The metric keys the full-ranking evaluator reports (``recall@20`` ...), shared by the config checks
(:class:`dglmm.config.TrainConfig`) and :mod:`dglmm.train.metrics`, which computes them."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map", "hit")


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Keys produced by :func:`dglmm.train.metrics.topk_metrics`, e.g. ``"recall@20"``."""
    return [f"{m}@{k}" for k in ks for m in METRICS]
