"""``dglmm leaderboard``: every model on every data set with one tuning budget, resumable, and its page.

For each data set and model of the specification (:mod:`dglmm.leaderboard.spec`), a ``dglmm tune`` study with
the board's budget, then the best trial on validation with several seeds (:mod:`dglmm.leaderboard.runner`);
``docs/results.md``, a PNG per data set and the README's extract are written from the study folders after
every study (:mod:`dglmm.leaderboard.page`), unfinished rows marked ``pending``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from dglmm.leaderboard.page import write_page
from dglmm.leaderboard.runner import Board, plan_board, run_board, status_line
from dglmm.leaderboard.spec import DEFAULT_SPEC, Row, Spec, load_spec

DEFAULT_OUT = "runs/board"


def leaderboard(spec: str | Path | None = None, out: str | Path = DEFAULT_OUT, page: str | Path = "docs/results.md",
                readme: str | Path | None = "README.md", workers: int = 1, datasets: list[str] | None = None,
                models: list[str] | None = None, page_only: bool = False, progress: bool = True,
                command: str = "dglmm leaderboard") -> dict:
    """Run the board (the studies not finished yet) and write its page; returns the study counts and a status
    line (:func:`~dglmm.leaderboard.runner.status_line`)."""
    from dglmm.errors import InputError

    if workers < 0:
        raise InputError(f"--workers must be 0 (in this process) or more, got {workers}")
    specification = load_spec(spec)
    unknown = sorted(set(datasets or []) - {d.key for d in specification.datasets})
    if unknown:
        raise InputError(f"--datasets {', '.join(unknown)}: not in {specification.path} "
                         f"({', '.join(d.key for d in specification.datasets)})")
    board = plan_board(specification, out)
    unknown = sorted(set(models or []) - {r.model for r in board.rows()})
    if unknown:
        raise InputError(f"--models {', '.join(unknown)}: no row of the board (its models: "
                         f"{', '.join(sorted({r.model for r in board.rows()}))})")

    def refresh() -> None:
        write_page(board, command, page, readme)

    counts = {"studies": len(board.rows())}
    if not page_only:
        counts = run_board(board, workers, models, datasets, progress, on_progress=refresh)
    refresh()
    return {**counts, "status": status_line(board)}


def command_line(argv: list[str]) -> str:
    """The command as it is written at the top of the page: ``dglmm leaderboard`` and its arguments."""
    return " ".join(["dglmm", "leaderboard", *map(shlex.quote, argv)])


__all__ = ["DEFAULT_OUT", "DEFAULT_SPEC", "Board", "Row", "Spec", "command_line", "leaderboard", "load_spec",
           "plan_board", "run_board", "write_page"]
