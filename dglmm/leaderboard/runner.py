"""Running the board: one ``dglmm tune`` study per row, each in a fresh worker process, resumable.

Study folders: ``<out>/<data set>/<study>/`` (the tune study folder: journal, ``trials.csv``, the best trial's
seed runs) with ``board.json`` beside them: the row, the budget, the process's peak memory and, once the study
and its seeds are finished, ``status: done``.  A run of the board skips the studies that are done under the
current budget; the others resume where the journal and the seed checkpoints left them (``dglmm tune``'s own
resumption), so an interrupted board never redoes a finished trial, study or seed.  Each study runs in a
process of its own (``--workers`` of them at a time), so its peak memory is its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from dglmm.errors import InputError
from dglmm.io import write_json
from dglmm.leaderboard.spec import DataSpec, Row, Spec, dataset_inputs, plan_rows

RECORD = "board.json"
SESSIONS = "sessions.jsonl"
STOP_SECONDS = 30.0  # how long stopped workers may take to record their state before they are killed


@dataclasses.dataclass
class Board:
    """The planned board: per data set, its rows, the models not applicable and the data's summary (or why the
    data set is not available here)."""

    spec: Spec
    out: Path
    sections: list[dict]

    def rows(self) -> list[Row]:
        return [row for section in self.sections for row in section["rows"]]

    def folder(self, row: Row) -> Path:
        return self.out / row.dataset / row.study

    def data(self, key: str) -> DataSpec:
        return next(d for d in self.spec.datasets if d.key == key)

    def missing(self, key: str) -> bool:
        return any(s.get("missing") for s in self.sections if s["data"].key == key)


def plan_board(spec: Spec, out: str | Path) -> Board:
    """Load each data set and plan its rows.  A data set that is not available here keeps its ``prepare`` note
    and, when the specification declares its ``inputs``, its rows (all pending)."""
    from dglmm.data.readers import load_dataset

    sections = []
    for data in spec.datasets:
        try:
            dataset = load_dataset(data.source, **data.options)
        except InputError as error:
            print(f"board: data set {data.key} not available ({' '.join(str(error).split())})", flush=True)
            rows, skipped = plan_rows(spec, data, set(data.inputs)) if data.inputs is not None else ([], {})
            sections.append({"data": data, "rows": rows, "skipped": skipped, "missing": True})
            continue
        rows, skipped = plan_rows(spec, data, dataset_inputs(dataset))
        sections.append({"data": data, "rows": rows, "skipped": skipped, "summary": dataset.summary()})
    return Board(spec, Path(out), sections)


def read_record(folder: Path) -> dict | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a record is rewritten atomically; an unreadable one means the study runs again (resumes)


def is_done(board: Board, row: Row) -> bool:
    """Finished under the current budget: every trial, every seed, the summary written."""
    record = read_record(board.folder(row))
    if not record or record.get("status") != "done":
        return False
    budget = record.get("budget", {})
    same = all(budget.get(k) == board.spec.budget[k] for k in ("trials", "seeds"))
    return same and (board.folder(row) / record.get("summary", "-")).is_file()


def status_line(board: Board) -> str:
    """``board: 3 of 32 studies finished; under way: book-crossing ngcf 12/16 trials, ...; not started: 27``."""
    rows = board.rows()
    done = [row for row in rows if is_done(board, row)]
    budget = board.spec.budget["trials"]
    begun = [f"{row.dataset} {row.label} {trials_used(board.folder(row))['finished']}/{budget} trials"
             for row in rows if row not in done and (board.folder(row) / "trials.csv").is_file()]
    waiting = len(rows) - len(done) - len(begun)
    return (f"board: {len(done)} of {len(rows)} studies finished" + (f"; under way: {', '.join(begun)}" if begun else "")
            + (f"; not started: {waiting}" if waiting else ""))


def settings_for(board: Board, row: Row) -> Any:
    """The ``dglmm tune`` settings of a row: the board's one budget, the row's fixed options."""
    from dglmm.tune import TuneSettings

    budget = board.spec.budget
    return TuneSettings(model=row.model, dataset=board.data(row.dataset).source, trials=budget["trials"],
                        seeds=budget["seeds"], study=row.study, out=str(board.out / row.dataset),
                        overrides=[f"train.epochs={budget['epochs']}", f"train.patience={budget['patience']}",
                                   f"train.seed={budget['seed']}", *row.overrides],
                        pruner=budget["pruner"], prune_startup_trials=budget["prune_startup_trials"],
                        prune_warmup_epochs=budget["prune_warmup_epochs"], startup_trials=budget["startup_trials"])


def run_study(task: dict) -> dict:
    """Worker: run (or resume) one study with its seeds; record the outcome and the process's peak memory."""
    from dglmm.data.readers import load_dataset
    from dglmm.interrupts import stop_requested
    from dglmm.tune import tune

    settings, folder = task["settings"], Path(task["folder"])
    print(f"board: {task['position']} {task['name']} started (pid {os.getpid()})", flush=True)
    started, code = time.time(), code_version()  # the code imported now, whatever the checkout holds later
    record = read_record(folder) or {}
    record.update(row=task["row"], budget=task["budget"], status="running")
    try:
        result = tune(settings, load_dataset(settings.dataset, **task["options"]), progress=task["progress"])
    except BaseException as error:  # recorded for the page; the study resumes on the next run
        status = "interrupted" if isinstance(error, KeyboardInterrupt) or stop_requested() else "error"
        record.update(status=status, error=f"{type(error).__name__}: {' '.join(str(error).split())[:300]}")
        _finish_record(folder, record, started, code)
        if status == "interrupted" and not isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt from error  # a stop that surfaced as another error stops the caller too
        raise
    summary = result["summary"]
    if summary is not None:
        record.update(status="done", summary=f"best-trial{summary['trial']}/summary.json", error="")
    else:
        record.update(status="incomplete", error=f"{result['running']} trial(s) running in another worker")
    _finish_record(folder, record, started, code)
    return record


def _finish_record(folder: Path, record: dict, started: float, code: str) -> None:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    record["peak_rss_mb"] = round(max(usage.ru_maxrss / 1024, record.get("peak_rss_mb", 0.0)), 1)  # kB -> MB
    record.setdefault("sessions", []).append({"ended": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                                              "seconds": round(time.time() - started, 1),
                                              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                                              "code": code})
    write_json(folder / RECORD, record)


def code_version() -> str:
    """The code that runs: the git commit of the checkout dglmm is imported from (``<commit>+modified src:<hash>``
    when the package's files differ from it), else ``src:<hash>`` (SHA-256 of the package's sources, 10 digits)."""
    import hashlib
    import subprocess

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    source = f"src:{digest.hexdigest()[:10]}"

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=package)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return source
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit if changed == "" else f"{commit}+modified {source}"


def run_board(board: Board, workers: int = 1, models: list[str] | None = None, datasets: list[str] | None = None,
              progress: bool = True, on_progress: Any = None) -> dict:
    """Run every row that is not done (of ``models`` and ``datasets`` only, when given, and in their order: data
    set by data set, then model by model), ``workers`` studies at a time, each in a fresh process (``workers=0``: in this process, one after the other); ``on_progress()`` is called after each
    study (the page is rewritten there).  Returns the counts of studies."""
    rows = [r for r in board.rows() if (not models or r.model in models) and (not datasets or r.dataset in datasets)
            and not board.missing(r.dataset)]
    rows.sort(key=lambda r: (datasets.index(r.dataset) if datasets else 0, models.index(r.model) if models else 0))
    todo = [r for r in rows if not is_done(board, r)]
    print(f"board: {len(rows)} studies, {len(rows) - len(todo)} finished, {len(todo)} to run, "
          f"{workers} worker(s), study folders in {board.out}", flush=True)
    session = _open_session(board.out, workers, len(todo))
    counts = {"studies": len(rows), "skipped": len(rows) - len(todo), "done": 0, "failed": 0}

    def finished(task: dict, error: str) -> None:
        counts["done" if _report(task, error) else "failed"] += 1
        _update_session(board.out, session, counts)
        if on_progress is not None:
            on_progress()

    tasks = [_task(board, row, f"[{index}/{len(todo)}]", progress) for index, row in enumerate(todo, 1)]
    try:
        if workers == 0:
            for task in tasks:
                finished(task, _run_here(task))
        else:
            _run_processes(tasks, workers, finished, alive=lambda: _update_session(board.out, session, counts))
    except KeyboardInterrupt:
        _update_session(board.out, session, counts, interrupted=True)
        raise
    return counts


def _task(board: Board, row: Row, position: str, progress: bool) -> dict:
    return {"settings": settings_for(board, row), "folder": str(board.folder(row)), "row": _row(row),
            "budget": board.spec.budget, "position": position, "name": f"{row.dataset} {row.label}",
            "progress": progress, "options": board.data(row.dataset).options}


ALIVE_EVERY = 300.0  # seconds between two updates of the invocation's last time while studies run


def _run_processes(tasks: list[dict], workers: int, finished: Any, alive: Any = None) -> None:
    """Each task in a fresh spawned process (no forked torch/OpenMP state; its peak memory is its own), at most
    ``workers`` at a time.  On an interrupt (Ctrl-C, or SIGTERM to this process) no other starts and the running
    ones are stopped (:func:`_stop`)."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    queue, running = list(tasks), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                task = {**queue.pop(0), "parent": os.getpid()}
                process = context.Process(target=_child, args=(task,), name=f"board {task['name']}")
                process.start()
                running[process.sentinel] = (process, task)
            ready = wait(list(running), timeout=ALIVE_EVERY)
            if not ready and alive is not None:
                alive()  # the invocation's end stays known when the machine stops it without a word
            for sentinel in ready:
                process, task = running.pop(sentinel)
                process.join()
                finished(task, "" if process.exitcode == 0 else f"worker exit status {process.exitcode}")
    except KeyboardInterrupt:
        _stop([process for process, _ in running.values()])
        raise


def _stop(processes: list, grace: float | None = None) -> None:
    """Stop worker processes: SIGTERM (each fails its running trial and records its study as interrupted), then
    up to ``grace`` seconds (:data:`STOP_SECONDS`) for all of them, then SIGKILL for any still running (its trial
    is failed on the next run, as a dead worker's).  Further Ctrl-C or SIGTERM cannot cut this short."""
    from dglmm.interrupts import ignoring_stop_signals

    grace = STOP_SECONDS if grace is None else grace
    with ignoring_stop_signals():
        for process in processes:
            if process.is_alive():
                print(f"board: stopping {process.name} (pid {process.pid})", file=sys.stderr, flush=True)
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                print(f"board: {process.name} (pid {process.pid}) did not stop within {grace:g} s: killed",
                      file=sys.stderr, flush=True)
                process.kill()
                process.join()


def _child(task: dict) -> None:
    """A worker process: one study; a failure is one line on stderr (the record holds it) and exit status 1;
    SIGTERM (from the board) or Ctrl-C records the study as interrupted, exit status 128 + the signal."""
    from dglmm.interrupts import die_with_parent, exit_status, interrupt_once

    interrupt_once()
    die_with_parent(task["parent"])
    try:
        run_study(task)
    except KeyboardInterrupt:
        raise SystemExit(exit_status()) from None
    except Exception as error:  # noqa: BLE001 - reported by the board, which goes on with the other studies
        print(f"board: {task['name']}: {type(error).__name__}: {' '.join(str(error).split())[:300]}",
              file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _run_here(task: dict) -> str:
    """Run a study in this process; returns "" or the error (one study failing does not stop the board)."""
    try:
        run_study(task)
    except Exception as error:  # noqa: BLE001 - recorded in board.json, reported by the board
        return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    return ""


def _row(row: Row) -> dict:
    return {**dataclasses.asdict(row), "overrides": list(row.overrides), "label": row.label}


def _report(task: dict, error: str) -> bool:
    """The progress line of a finished (or failed) study, from its record."""
    folder = Path(task["folder"])
    record = read_record(folder) or {}
    if error or record.get("status") not in ("done", "incomplete"):
        why = record.get("error") or error or "no record written"
        print(f"board: {task['position']} {task['name']} failed: {why}", flush=True)
        return False
    print(f"board: {task['position']} {task['name']} {record['status']}: {study_line(folder, record)}", flush=True)
    return record["status"] == "done"


def study_line(folder: Path, record: dict) -> str:
    """Trials (pruned), seconds, best validation and test metric of a study folder."""
    trials = trials_used(folder)
    session = record["sessions"][-1]
    text = (f"{trials['finished']} trials ({trials['pruned']} pruned), {session['seconds']:.0f} s "
            f"({session.get('cpu_seconds', 0):.0f} s CPU)")
    if record.get("summary"):
        summary = json.loads((folder / record["summary"]).read_text())
        metric = summary["metric"]
        test = summary["test"][metric]
        text += (f", best trial {summary['trial']} valid {metric} {summary['valid_trial']:.4f}, test {metric} "
                 f"{test['mean']:.4f} ± {test['std']:.4f}")
    return text + f", peak {record['peak_rss_mb']:.0f} MB"


def trials_used(folder: Path) -> dict[str, int]:
    """Finished and pruned trials of a study folder (its ``trials.csv``)."""
    import csv

    path = folder / "trials.csv"
    if not path.is_file():
        return {"finished": 0, "pruned": 0, "seconds": 0.0}
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["state"] in ("complete", "pruned")]
    return {"finished": len(rows), "pruned": sum(r["state"] == "pruned" for r in rows),
            "seconds": sum(float(r["seconds"] or 0) for r in rows)}


def _open_session(out: Path, workers: int, todo: int) -> dict:
    session = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "workers": workers, "to_run": todo,
               "pid": os.getpid(), "id": uuid.uuid4().hex}  # two invocations may share a second and a process
    sessions = read_sessions(out)
    if todo:
        sessions.append(session)
        _write_sessions(out, sessions)
    return session


def _update_session(out: Path, session: dict, counts: dict, interrupted: bool = False) -> None:
    sessions = read_sessions(out)
    for entry in sessions:
        if entry.get("id", entry["started"]) == session["id"]:
            entry.update(last=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), finished=counts["done"],
                         failed=counts["failed"], interrupted=interrupted)
    _write_sessions(out, sessions)


def read_sessions(out: Path) -> list[dict]:
    """The board's invocations: start, last time seen running (a study ended, or every ``ALIVE_EVERY`` seconds
    while workers run), studies finished and failed, workers."""
    path = Path(out) / SESSIONS
    if not path.is_file():
        return []
    out_list = []
    for line in path.read_text().splitlines():
        try:
            out_list.append(json.loads(line))
        except ValueError:
            continue
    return out_list


def _write_sessions(out: Path, sessions: list[dict]) -> None:
    from dglmm.io import write_text

    write_text(Path(out) / SESSIONS, "".join(json.dumps(s) + "\n" for s in sessions))
