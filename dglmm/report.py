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
