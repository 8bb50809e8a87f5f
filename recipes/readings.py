"""Sensitivity to the documented readings: a model's defaults against each other value of its reading options.

    python recipes/readings.py -m mgcn -d tiktok --seeds 3 --set train.epochs=30
    python recipes/readings.py -m freedom --readings prune_schedule trainable_features
    python recipes/readings.py -m mgcn --quick                 # one seed, short training

A reading option (declared ``reading=True``; ``dglmm models NAME`` marks it ``[reading]``) chooses between
readings of an ambiguous equation, or between the paper and its official code; ``docs/models/<model>.md``
says what each value means.  Every row is the model's configuration (its defaults, ``-c`` files and ``--set``
options, the same for every row) with one reading option changed, trained with the same budget and seeds as
the default row; the table gives the test metrics at the best validation epoch, the mean per-user difference
of test Recall@20 to the default row with its Wilcoxon p (``*``: significant, also in the t-test over seeds
when there are several), and the validation metric each row was selected on.  A ``--set`` grid (``lr=[...]``)
is searched on validation for every row alike.  Options that have no effect in the configuration (e.g. the
InfoNCE readings of a model without its contrastive term) are left out.

Expected time: ``-m mgcn --quick`` on the synthetic data (12 rows, one seed, at most 30 epochs) took 3 min
of wall time on one thread while two other jobs shared the 2-core machine; on real data each row costs what a
training run of the model costs there.
"""

from __future__ import annotations

import sys

from dglmm.recipe import (
    Recipe,
    cell,
    compare_rows,
    format_table,
    reading_rows,
    recipe_main,
    recipe_parser,
)

METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


def readings(r: Recipe) -> str:
    """The default row, then one row per alternative value of each reading option."""
    model = r.args.model
    rows = reading_rows(model, r.dataset.name, r.args.config, r.args.set, r.args.readings)
    default = r.run("readings", "defaults", model, [])
    head = ["reading", "R@20", "NDCG@20", "R@10", "NDCG@10", "vs defaults (R@20)", "valid R@20", "best epochs"]
    table = [_row("(the defaults)", default, None)] if default else []
    for label, overrides in rows:
        summary = r.run("readings", label, model, overrides)
        if summary is not None:
            table.append(_row(label, summary, default))
    title = (f"Sensitivity of {model} to its documented readings ({r.dataset.name}; test at the best validation "
             f"epoch, mean ± std over {r.args.seeds} seed(s))")
    return title + "\n" + format_table(head, table)


def _row(label: str, summary: dict, default: dict | None) -> list[str]:
    cells = [label] + [cell(summary, m) for m in METRICS]
    comparison = compare_rows(summary, default, ["recall@20"]) if default is not None else None
    if comparison:
        c = comparison[0]
        cells.append(f"{c.diff:+.4f} (p {c.p_wilcoxon:.2g})" + (" *" if c.significant() else ""))
    else:
        cells.append("")
    best = ", ".join(str(e) for e in summary["best_epochs"])
    return cells + [cell(summary, summary["metric"], group="valid"), best]


def _note(r: Recipe) -> str:
    return (f"model {r.args.model}: each row changes one reading option from the configuration of the first row; "
            "every row has the same budget and seeds")


def main(argv: list[str] | None = None) -> int:
    tables = {"readings": readings}
    parser = recipe_parser(__doc__, tables, [], "runs/readings")
    parser.add_argument("-m", "--model", required=True, help="a registered model (dglmm models)")
    parser.add_argument("--readings", nargs="+", metavar="OPTION",
                        help="only these reading options (default: every one that has an effect)")
    known, _ = parser.parse_known_args(argv)  # the model names the default output folder
    parser.set_defaults(out=f"runs/readings/{known.model}")
    return recipe_main("Readings", parser, tables, argv, note=_note)


if __name__ == "__main__":
    sys.exit(main())
