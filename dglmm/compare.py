"""Paired significance tests between runs: ``dglmm compare RUN_A RUN_B [RUN_C ...]``.

Every run folder keeps the test metrics of each evaluated user (``per_user_test.npz``).  A *side* is one run
folder or an experiment folder whose ``seed*`` folders are the runs of several seeds.  Each later side is
compared with the first (the baseline), metric by metric, on the users both evaluate (they must be the same):

A side is named as every command names a run (:func:`dglmm.io.seed_run_dirs`); a grid's folder stands for
its point selected on validation.

* the per-user difference ``d_u = B_u - A_u`` (each side averaged over its seeds first);
* **Wilcoxon signed-rank** test of ``d`` (two-sided, ``scipy.stats.wilcoxon``, zero differences dropped as in
  Wilcoxon's original method); when every ``d_u`` is zero there is no evidence of a difference and p = 1;
* when both sides have the same number (>= 2) of seeds, a **paired t-test over seeds** of the seed means
  (``scipy.stats.ttest_rel``; seed i of A paired with seed i of B: same seed, same sampler draws);
* effect size **d_z** = mean(d) / sd(d) (Cohen's d for paired samples) and the **95% confidence interval** of
  the mean difference, ``mean(d) +- t_{0.975, n-1} sd(d) / sqrt(n)``.

No correction for testing several metrics is applied; with m metrics, Holm's rule compares the smallest p with
alpha / m.  A table is printed and a PNG (mean differences with their intervals) is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import numpy as np
from scipy import stats

from dglmm.errors import InputError
from dglmm.io import seed_run_dirs

PER_USER_FILE = "per_user_test.npz"
DEFAULT_METRICS = ("recall@20", "ndcg@20", "precision@20")


@dataclasses.dataclass
class Side:
    """The per-user test metrics of one model: ``values[metric]`` is ``[n_seeds, n_users]``."""

    name: str
    users: np.ndarray
    values: dict[str, np.ndarray]

    @property
    def n_seeds(self) -> int:
        return next(iter(self.values.values())).shape[0]


@dataclasses.dataclass
class Comparison:
    """One metric of side B against baseline A."""

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    effect: float
    p_wilcoxon: float
    p_ttest: float | None
    n_users: int
    n_seeds: tuple[int, int]

    def significant(self, alpha: float = 0.05) -> bool:
        """Wilcoxon's p below ``alpha`` (and the seeds' t-test's too, when there is one)."""
        return self.p_wilcoxon < alpha and (self.p_ttest is None or self.p_ttest < alpha)


def read_per_user(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of a ``per_user_test.npz`` (numbers only: read with ``allow_pickle=False``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable per-user results file ({' '.join(str(exc).split())[:150]})")\
            from None


def run_folders(path: Path | str) -> list[Path]:
    """The single-seed runs of a side that hold per-user test metrics, in seed order: a seed's folder, the
    folder ``dglmm train`` prints, or a grid's folder standing for its selected point
    (:func:`dglmm.io.seed_run_dirs`)."""
    try:
        return seed_run_dirs(path, marker=PER_USER_FILE)
    except InputError as error:
        if "not a run folder" not in str(error):
            raise
        raise InputError(f"{path}: no {PER_USER_FILE} here or in seed*/ (not a finished run folder, or a run "
                         "written before runs kept per-user test metrics)") from None


def load_side(path: Path | str, metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS) -> Side:
    """Read the per-user metrics of every seed of a side (the same users in every seed)."""
    folders = run_folders(path)
    arrays = [read_per_user(folder / PER_USER_FILE) for folder in folders]
    users = arrays[0]["user"]
    for folder, a in zip(folders, arrays, strict=True):
        if not np.array_equal(a["user"], users):
            raise InputError(f"{folder}: evaluates other users than {folders[0]} (a different dataset or split?)")
        missing = [m for m in metrics if m not in a]
        if missing:
            raise InputError(f"{folder}: no per-user {', '.join(missing)}; it has "
                             f"{', '.join(k for k in a if k not in ('user', 'n_relevant'))}")
    return Side(str(path), users, {m: np.stack([a[m] for a in arrays]) for m in metrics})


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired samples; 1.0 when every difference is zero."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(b, a, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_t_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p; 1.0 when every difference is zero (NaN-free for identical runs)."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(stats.ttest_rel(b, a).pvalue)


def mean_ci(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean of ``d``."""
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return float(d.mean() - half), float(d.mean() + half)


def compare_sides(a: Side, b: Side, metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS) -> list[Comparison]:
    """Side ``b`` against baseline ``a``, per metric (see the module docstring)."""
    if not np.array_equal(a.users, b.users):
        raise InputError(f"{a.name} and {b.name} evaluate different users ({len(a.users)} vs {len(b.users)}): "
                         "compare runs on the same dataset and split")
    out = []
    for m in metrics:
        ua, ub = a.values[m].mean(0), b.values[m].mean(0)
        d = ub - ua
        sd = d.std(ddof=1) if len(d) > 1 else 0.0
        low, high = mean_ci(d)
        p_t = None
        if a.n_seeds == b.n_seeds >= 2:
            p_t = paired_t_p(a.values[m].mean(1), b.values[m].mean(1))
        out.append(Comparison(m, float(ua.mean()), float(ub.mean()), float(d.mean()), low, high,
                              float(d.mean() / sd) if sd > 0 else 0.0, wilcoxon_p(ua, ub), p_t, len(d),
                              (a.n_seeds, b.n_seeds)))
    return out


def label(path: str | Path) -> str:
    """A short name of a side: its folder, with the parent for ``seed*`` / ``point*`` folders."""
    path = Path(path)
    if path.name.startswith(("seed", "point")) and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def format_comparisons(baseline: str, results: dict[str, list[Comparison]], alpha: float = 0.05) -> str:
    """A plain-text table: one row per (side, metric); ``*`` marks p < alpha."""
    header = ["vs " + label(baseline), "metric", "A", "B", "B-A", "95% CI", "d_z", "p Wilcoxon", "p t(seeds)",
              ""]
    rows = []
    for name, comparisons in results.items():
        for c in comparisons:
            rows.append([label(name), c.metric, f"{c.mean_a:.4f}", f"{c.mean_b:.4f}", f"{c.diff:+.4f}",
                         f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", f"{c.effect:+.3f}", f"{c.p_wilcoxon:.3g}",
                         "-" if c.p_ttest is None else f"{c.p_ttest:.3g}", "*" if c.significant(alpha) else ""])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    users = next(iter(results.values()))[0].n_users if results else 0
    lines.append(f"{users} users; * : p < {alpha} (Wilcoxon, and the t-test over seeds when both sides have "
                 "several); no multiple-testing correction")
    return "\n".join(lines)


def plot_comparisons(results: dict[str, list[Comparison]], path: Path | str, alpha: float = 0.05,
                     baseline: str | Path | None = None) -> None:
    """Write :func:`comparison_figure` to ``path``."""
    import matplotlib.pyplot as plt

    fig = comparison_figure(results, alpha, baseline)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_figure(results: dict[str, list[Comparison]], alpha: float = 0.05,
                      baseline: str | Path | None = None):
    """Mean per-user difference B - A with its 95% interval, one panel per compared side titled with both
    sides; red bars are significant at ``alpha`` (legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(results), figsize=(4.8 * len(results), 3.8), squeeze=False)
    for ax, (name, comparisons) in zip(axes[0], results.items(), strict=True):
        ys = np.arange(len(comparisons))
        diffs = [c.diff for c in comparisons]
        err = [[c.diff - c.ci_low for c in comparisons], [c.ci_high - c.diff for c in comparisons]]
        colors = ["tab:red" if c.significant(alpha) else "tab:grey" for c in comparisons]
        ax.barh(ys, diffs, xerr=err, color=colors, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [f"{c.metric}\np={c.p_wilcoxon:.2g}" for c in comparisons])
        title = f"B: {label(name)}" + (f"\nvs A: {label(baseline)}" if baseline is not None else "")
        ax.set(xlabel="mean per-user test difference (B - A), 95% CI", title=title)
        ax.legend(handles=[Patch(color="tab:red", label=f"significant (p < {alpha:g})"),
                           Patch(color="tab:grey", label="not significant")], fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def default_plot_path(paths: list[str | Path]) -> Path:
    """``compare-<A>-vs-<B>[-and-N-more].png`` in the folder that holds the compared runs (their common
    parent), never the current directory by accident."""
    names = [re.sub(r"[^A-Za-z0-9_.+=-]+", "-", label(p)).strip("-") for p in paths[:2]]
    more = f"-and-{len(paths) - 2}-more" if len(paths) > 2 else ""
    parents = [os.path.normpath(Path(p).parent) for p in paths]
    try:
        folder = os.path.commonpath(parents)
    except ValueError:  # absolute and relative paths mixed
        folder = os.path.commonpath([os.path.abspath(p) for p in parents])
    return Path(folder) / f"compare-{names[0]}-vs-{names[1]}{more}.png"


def compare_runs(paths: list[str | Path], metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS
                 ) -> dict[str, list[Comparison]]:
    """Every side after the first against the first."""
    if len(paths) < 2:
        raise InputError("compare needs at least two runs: the baseline first")
    base = load_side(paths[0], metrics)
    return {str(p): compare_sides(base, load_side(p, metrics), metrics) for p in paths[1:]}
