"""Plain-text tables of experiment summaries (what the CLI, the demo and the recipes print), and the help
formatter every dglmm command line (the CLI's and the recipes') shares."""

from __future__ import annotations

import argparse

DEFAULT_COLUMNS = ("recall@20", "ndcg@20", "precision@20", "map@20")


def cell(summary: dict, metric: str, split: str = "test") -> str:
    """``mean`` or ``mean +- std`` when several seeds were run."""
    stats = summary[split].get(metric)
    if stats is None:
        return "-"
    if len(summary.get("seeds", [0])) > 1:
        return f"{stats['mean']:.4f} ± {stats['std']:.4f}"
    return f"{stats['mean']:.4f}"


def format_summary_table(summaries: list[dict], columns: tuple[str, ...] = DEFAULT_COLUMNS,
                         label: str = "model") -> str:
    """One row per summary: test metrics at the best validation epoch, plus the selected grid point."""
    header = [label, *columns, "best epoch", "selected"]
    rows = [[s.get("label", s["model"]), *(cell(s, c) for c in columns),
             ",".join(str(e) for e in s["best_epochs"]),
             " ".join(f"{k}={v}" for k, v in s["selected"].items()) or "-"] for s in summaries]
    note = ("test metrics of the best validation epoch (epochs counted from 1)"
            + (", mean ± std over seeds" if any(len(s.get("seeds", [0])) > 1 for s in summaries) else "")
            + "; selected: the grid point chosen on validation (- : no grid)")
    return format_table(header, rows) + "\n" + note


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except flags and options without one (None or [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == [] or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def ordering_agreement(labels: list[str], ours: list[float], paper: list[float], metric: str) -> str:
    """Whether the rows rank alike by ``metric`` in dglmm's run (``ours``) and in the paper: the pairs of rows
    in the same order, Kendall's tau (tau-b, ties allowed) and the best row of each."""
    from scipy import stats

    n = len(labels)
    if n < 2:
        return f"ordering by {metric}: fewer than two rows with paper numbers, nothing to compare"
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    same = sum((ours[i] - ours[j]) * (paper[i] - paper[j]) > 0 for i, j in pairs)
    tied = sum(ours[i] == ours[j] or paper[i] == paper[j] for i, j in pairs)
    tau = stats.kendalltau(ours, paper).statistic
    best_ours, best_paper = labels[max(range(n), key=ours.__getitem__)], labels[max(range(n), key=paper.__getitem__)]
    verdict = "agrees with" if same == len(pairs) else "differs from"
    ties = f", {tied} tied on one side" if tied else ""
    tau_text = "undefined: one side all tied" if tau != tau else f"{tau:+.2f}"  # NaN when a side is constant
    return (f"ordering by {metric} {verdict} the paper's: {same} of {len(pairs)} pairs in the same order{ties} "
            f"(Kendall tau {tau_text}); best: {best_ours} here, {best_paper} in the paper")
