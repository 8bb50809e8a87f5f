"""``dglmm leaderboard`` end to end on small synthetic data: the page, its PNG, pending rows, the README extract,
and resumption without redoing finished studies or seeds."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from dglmm.cli import main
from dglmm.leaderboard.page import BEGIN, END
from dglmm.leaderboard.spec import load_spec, plan_rows

ROOT = Path(__file__).resolve().parents[1]

BUDGET = {"trials": 2, "seeds": 2, "epochs": 2, "patience": 2, "pruner": "median", "prune_startup_trials": 1,
          "prune_warmup_epochs": 1, "startup_trials": 1, "seed": 2024}


def write_spec(folder: Path, models: list[str], **extra) -> Path:
    spec = {"budget": BUDGET, "models": models,
            "datasets": {"small": {"title": "Small synthetic", "about": "the generator at a small size",
                                   "source": "synthetic", "options": {"n_users": 120, "n_items": 160}},
                         "absent": {"title": "Absent data", "source": str(folder / "nowhere"),
                                    "prepare": "copy it here", "inputs": []}},
            **extra}
    path = folder / "board.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def board_args(tmp_path: Path, spec: Path, *more: str) -> list[str]:
    return ["leaderboard", "--spec", str(spec), "--out", str(tmp_path / "out"), "--page",
            str(tmp_path / "docs" / "results.md"), "--readme", str(tmp_path / "README.md"), "--workers", "0",
            "--quiet", *more]


def table_rows(page: str) -> dict[str, list[str]]:
    """model -> cells of the Small synthetic table."""
    section = page.split("## Small synthetic")[1].split("## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 12 and cells[1] not in ("model",):
            rows[cells[1]] = cells
    return rows


def trial_rows(study: Path) -> list[dict]:
    import csv

    with open(study / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def files_of(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


QUESTIONS = [{"ask": "Does MF beat LightGCN?", "versus": {"models": ["mf"], "baseline": "lightgcn",
                                                          "datasets": ["small"]}, "note": "a hand-written remark."},
             {"ask": "Where does MF stand?", "standing": {"models": ["mf"], "datasets": ["small", "absent"]}},
             {"ask": "Orderings?", "claims": [{"paper": "A paper, Table 1", "order": ["lightgcn", "mf"]}]}]


@pytest.mark.parametrize(("epochs_run", "best_epoch", "ended"), [
    (30, 30, True),    # selected the last epoch
    (30, 21, True),    # 9 epochs without a better one at the cap: patience 10 not exhausted
    (30, 20, False),   # early stopping was due at the cap itself
    (25, 15, False),   # early stopping ended it
])
def test_a_seed_run_is_marked_when_the_cap_ended_it_before_early_stopping(epochs_run, best_epoch, ended):
    from dglmm.leaderboard.page import ended_by_cap

    assert ended_by_cap({"epochs_run": epochs_run, "best_epoch": best_epoch}, {"epochs": 30, "patience": 10}) is ended


def test_board_page_pending_and_resume(tmp_path, capsys):
    spec = write_spec(tmp_path, ["lightgcn", "mf"], questions=QUESTIONS)
    (tmp_path / "README.md").write_text("# x\n\n## Results at a glance\n\nhand-written line\n\n## Layout\n")
    page = tmp_path / "docs" / "results.md"

    # 1. LightGCN only: its row finished, MF's pending, the absent data set said so
    assert main(board_args(tmp_path, spec, "--models", "lightgcn")) == 0
    out = capsys.readouterr().out
    assert "board: 2 studies" not in out and "1 studies, 0 finished, 1 to run" in out
    assert re.search(r"small lightgcn done: 2 trials \(\d pruned\)", out)
    assert "board: 1 of 4 studies finished; not started: 3" in out
    text = page.read_text()
    rows = table_rows(text)
    assert rows["mf"][2] == "pending" and rows["mf"][8] == "0/2"
    light = tmp_path / "out" / "small" / "lightgcn"
    summary = json.loads(next(light.glob("best-trial*/summary.json")).read_text())
    for cell, metric in zip(rows["lightgcn"][2:6], ("recall@20", "ndcg@20", "recall@10", "ndcg@10"), strict=True):
        assert cell == f"{summary['test'][metric]['mean']:.4f} ± {summary['test'][metric]['std']:.4f}"
    assert rows["lightgcn"][0] == "1" and rows["lightgcn"][8].startswith("2 (")
    seeds = [json.loads(f.read_text()) for f in sorted(light.glob("best-trial*/seed*/results.json"))]
    capped = any(r["epochs_run"] == BUDGET["epochs"] and BUDGET["epochs"] - r["best_epoch"] < BUDGET["patience"]
                 for r in seeds)  # the cap, not early stopping, ended a seed run
    best = ", ".join(map(str, summary["best_epochs"])) + (" ‡" if capped else "")
    assert rows["lightgcn"][9] == best and rows["mf"][9] == ""
    assert "not found): its rows stay pending until it is prepared: copy it here." in text
    absent = text.split("## Absent data")[1]
    assert "| mf | pending |" in absent and "| lightgcn | pending |" in absent
    assert "by `dglmm leaderboard --spec" in text and "1 of 4 studies finished (2 wait for their data)" in text
    png = tmp_path / "docs" / "results" / "small.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (tmp_path / "README.md").read_text()
    assert BEGIN in readme and END in readme and "hand-written line" in readme and "1 of 2 models" in readme
    assert "| Absent data | pending (data not prepared) |" in readme
    answers = text.split("## What the tables say")[1]
    assert "Pending: mf on Small synthetic." in answers and "Pending: mf on Small synthetic, mf on Absent" in answers
    assert "  - Small synthetic: pending (mf)" in answers

    # 2. the whole board: LightGCN's study is not touched, MF runs; the paired test is dglmm compare's
    before = files_of(light)
    assert main(board_args(tmp_path, spec)) == 0
    out = capsys.readouterr().out
    assert "2 studies, 1 finished, 1 to run" in out and "lightgcn" not in out.split("to run")[1]
    assert files_of(light) == before
    rows = table_rows(page.read_text())
    assert rows["mf"][2] != "pending" and {rows["mf"][0], rows["lightgcn"][0]} == {"1", "2"}
    mf = tmp_path / "out" / "small" / "mf"
    per_user = {name: np.stack([np.load(p)["recall@20"] for p in sorted(folder.glob("best-trial*/seed*/per_user_"
                                                                                       "test.npz"))]).mean(0)
                for name, folder in (("lightgcn", light), ("mf", mf))}
    diff = (per_user["mf"] - per_user["lightgcn"]).mean()
    assert rows["mf"][6].startswith(f"{diff:+.4f} (p ")
    assert rows["lightgcn"][6] == "" and rows["mf"][7] == ""  # MF uses no KG: no test against MF
    # the answers: the same difference, its verdict from scipy's Wilcoxon test on the per-user averages
    from scipy.stats import wilcoxon

    p = wilcoxon(per_user["mf"], per_user["lightgcn"]).pvalue
    above = "beats" if diff > 0 else "is below"
    said = "mf and lightgcn are not separated" if p >= 0.05 else f"mf {above} lightgcn"
    answers = page.read_text().split("## What the tables say")[1]
    versus = answers.split("### Does MF beat LightGCN?")[1].split("###")[0]
    assert f"On Small synthetic, {said}" in versus
    assert versus.strip().startswith("Yes: mf on Small synthetic" if p < 0.05 and diff > 0 else "No: ")
    assert f"{diff:+.4f} test Recall@20 per user, p {p:.2g}" in versus
    capped = {name: sum(r["epochs_run"] == 2 and 2 - r["best_epoch"] < 2  # cap 2, patience 2
                        for r in map(json.loads, map(Path.read_text, folder.glob("best-trial*/seed*/results.json"))))
              for name, folder in (("mf", mf), ("lightgcn", light))}
    counts = ", ".join(f"{name} {n} of 2" for name, n in capped.items() if n)
    assert (f"seed runs ended by the 2-epoch cap, not by early stopping: {counts})" in versus) == bool(counts)
    assert versus.strip().endswith("Note (the specification's, not measured): a hand-written remark.")
    assert f"| Small synthetic | mf | {rows['mf'][0]} of 2 | {rows['mf'][2]} | {rows['mf'][9]} |" in versus
    standing = answers.split("### Where does MF stand?")[1].split("###")[0]
    assert f"mf ranks {rows['mf'][0]} of 2 by mean test Recall@20" in standing and "Pending: mf on Absent" in standing
    claims = answers.split("### Orderings?")[1]
    agree, reverse = int(p < 0.05 and diff < 0), int(p < 0.05 and diff > 0)
    assert f"Small synthetic: {agree} of 1 pairs significantly in the paper's order, {reverse} significantly reversed"\
        in claims
    readme = (tmp_path / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and "2 of 2 models" in readme

    # 3. a board killed during MF's second seed: the rerun trains that seed only, no trial, nothing of LightGCN
    record = json.loads((mf / "board.json").read_text())
    record["status"] = "running"
    (mf / "board.json").write_text(json.dumps(record))
    seeds = sorted(mf.glob("best-trial*/seed*"))
    (seeds[1] / "results.json").unlink()
    journal = (mf / "journal.log").read_bytes()
    kept = seeds[0].joinpath("results.json").stat().st_mtime_ns
    assert main(board_args(tmp_path, spec, "--page-only")) == 0
    assert "board: 1 of 4 studies finished; under way: small mf 2/2 trials; not started: 2" in capsys.readouterr().out
    assert main(board_args(tmp_path, spec)) == 0
    out = capsys.readouterr().out
    assert "2 studies, 1 finished, 1 to run" in out and "small mf done" in out
    assert (mf / "journal.log").read_bytes() == journal  # no trial asked or run
    assert seeds[0].joinpath("results.json").stat().st_mtime_ns == kept and (seeds[1] / "results.json").is_file()
    assert files_of(light) == before

    # 4. nothing left: the page is rewritten, no study runs
    assert main(board_args(tmp_path, spec)) == 0
    assert "0 to run" in capsys.readouterr().out


def test_rows_follow_the_data_inputs(tmp_path):
    spec = load_spec(write_spec(tmp_path, ["lightgcn", "kgat", "vbpr", "slifmr"], variants={"slifmr": {
        "uses": ["kg", "modalities"], "without": {"kg": {"label": "w/o KG", "set": ["model.variant=w/o KG"]},
                                                  "modalities": {"label": "w/o MM", "set": ["model.variant=w/o MM"]}}}}))
    data = spec.datasets[0]
    rows, skipped = plan_rows(spec, data, {"kg"})
    assert [r.label for r in rows] == ["lightgcn", "kgat", "slifmr (w/o MM)"]
    assert skipped == {"vbpr": "needs item features"}
    assert rows[2].overrides == ("model.variant=w/o MM",) and rows[2].study == "slifmr-wo-mm" and rows[2].uses_kg
    rows, skipped = plan_rows(spec, data, set())
    assert [r.label for r in rows] == ["lightgcn"]  # no variant declared for a missing KG and features together
    assert set(skipped) == {"kgat", "vbpr", "slifmr"} and skipped["slifmr"] == "needs a KG and item features"
    rows, _ = plan_rows(spec, data, {"kg", "modalities"})
    assert [r.label for r in rows] == ["lightgcn", "kgat", "vbpr", "slifmr"]


def test_board_uses_every_registered_model_by_default(tmp_path):
    import dglmm

    spec = load_spec(write_spec(tmp_path, []) .parent / "board.yaml")
    spec.models = None
    assert spec.model_names() == dglmm.model_names()


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown keys colour"),
    ({"budget": {"trials": 2}}, "budget needs exactly"),
    ({"models": ["lightgcn", "nosuch"]}, "nosuch are not registered"),
    ({"datasets": {"Bad Key": {"source": "synthetic"}}}, "a data set key is"),
    ({"questions": [{"ask": "Why?"}]}, "questions[0] needs ask and exactly one of versus"),
    ({"questions": [{"ask": "Who?", "versus": {"models": ["mf"]}}]}, "questions[0].versus needs models, baseline"),
    ({"questions": [{"ask": "Which?", "claims": [{"paper": "P"}]}]}, "questions[0].claims must list"),
    ({"questions": [{"ask": "Where?", "standing": {"models": ["mf"], "datasets": ["smal"]}}]},
     "questions[0] names data sets smal the board does not have"),
    ({"questions": [{"ask": "Where?", "standing": {"models": ["mf"], "datasets": ["small"]}, "note": [1]}]},
     "questions[0].note must be text"),
])
def test_bad_spec_is_one_line(tmp_path, capsys, change, message):
    spec = write_spec(tmp_path, ["lightgcn"])
    data = yaml.safe_load(spec.read_text())
    data.update(change)
    spec.write_text(yaml.safe_dump(data))
    assert main(board_args(tmp_path, spec, "--page-only")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dglmm: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_parallel_workers_run_studies_in_their_own_processes(tmp_path, capfd, monkeypatch):
    from dglmm.leaderboard import runner

    spec = write_spec(tmp_path, ["lightgcn", "mf"])
    data = yaml.safe_load(spec.read_text())
    data["budget"].update(trials=1, seeds=1)
    spec.write_text(yaml.safe_dump(data))
    args = board_args(tmp_path, spec, "--readme", "")
    args[args.index("--workers") + 1] = "2"
    updates, update = [], runner._update_session
    monkeypatch.setattr(runner, "ALIVE_EVERY", 0.2)
    monkeypatch.setattr(runner, "_update_session", lambda *a, **k: (updates.append(time.time()), update(*a, **k)))
    assert main(args) == 0
    assert len(updates) > 2  # besides one per study: the invocation's last time kept while the studies ran
    captured = capfd.readouterr()
    pids = set(re.findall(r"started \(pid (\d+)\)", captured.out))
    assert len(pids) == 2 and str(__import__("os").getpid()) not in pids
    rows = table_rows((tmp_path / "docs" / "results.md").read_text())
    assert rows["lightgcn"][2] != "pending" and rows["mf"][2] != "pending"
    for model in ("lightgcn", "mf"):
        record = json.loads((tmp_path / "out" / "small" / model / "board.json").read_text())
        assert record["status"] == "done" and record["peak_rss_mb"] > 50
        assert record["sessions"][-1]["code"] == runner.code_version()  # the worker process's code, recorded


def test_interrupted_study_resumes_without_redoing_its_trials(tmp_path, capsys, monkeypatch):
    from dglmm.train.trainer import Trainer

    spec = write_spec(tmp_path, ["mf"])
    original, calls = Trainer.fit_validation, []

    def stop_at_second(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second trial's training
        return original(self)

    monkeypatch.setattr(Trainer, "fit_validation", stop_at_second)
    with pytest.raises(SystemExit) as stopped:
        main(board_args(tmp_path, spec, "--readme", ""))
    assert stopped.value.code == 130
    assert "run the same command to continue" in capsys.readouterr().err
    study = tmp_path / "out" / "small" / "mf"
    assert json.loads((study / "board.json").read_text())["status"] == "interrupted"
    session = json.loads((tmp_path / "out" / "sessions.jsonl").read_text().splitlines()[0])
    assert session["interrupted"] and session["finished"] == 0
    first = trial_rows(study)[0]
    assert first["number"] == "0" and first["state"] in ("complete", "pruned")

    monkeypatch.setattr(Trainer, "fit_validation", original)
    assert main(board_args(tmp_path, spec, "--readme", "")) == 0
    assert "small mf done: 2 trials" in capsys.readouterr().out
    page = (tmp_path / "docs" / "results.md").read_text()
    assert re.search(r"Run in 2 invocations of the command, \S+ \S+ to \S+ \S+ UTC, \d+ s of wall time at least",
                     page)
    when = page[page.index("## When the board ran"):]
    assert re.search(r"\| 1 \| [-\d]+ [:\d]+ \| [-\d]+ [:\d]+ \| \d+ s \| 0 \| 0 \| interrupted \|", when)
    assert re.search(r"\| 2 \| [-\d]+ [:\d]+ \| [-\d]+ [:\d]+ \| \d+ s \| 0 \| 1 \| all its studies done \|", when)
    assert re.search(r"Wall time of the 2 invocations seen running: \d+ s\.", when)
    rows = trial_rows(study)
    assert {k: rows[0][k] for k in ("number", "state", "value", "seconds")} == \
        {k: first[k] for k in ("number", "state", "value", "seconds")}  # trial 0 kept as it was, not re-run
    states = [row["state"] for row in rows]
    assert states.count("fail") == 1 and len(states) - states.count("fail") == 2


def test_a_stop_that_surfaces_as_another_error_is_recorded_as_an_interruption(tmp_path, capsys, monkeypatch):
    import dglmm.tune
    from dglmm import interrupts

    spec = write_spec(tmp_path, ["mf", "lightgcn"])
    monkeypatch.setattr(interrupts, "_received", [])

    def stopped_in_a_library(*args, **kwargs):
        try:  # `kill PID`, whose interrupt a library turned into its own error
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt as error:
            raise RuntimeError("a library's own error") from error

    monkeypatch.setattr(dglmm.tune, "tune", stopped_in_a_library)
    with pytest.raises(SystemExit) as stopped:
        main(board_args(tmp_path, spec, "--readme", ""))
    assert stopped.value.code == 128 + signal.SIGTERM  # the board stopped: the second study never started
    record = json.loads((tmp_path / "out" / "small" / "mf" / "board.json").read_text())
    assert record["status"] == "interrupted" and "a library's own error" in record["error"]
    assert not (tmp_path / "out" / "small" / "lightgcn" / "board.json").exists()


def test_an_invocation_stopped_before_its_first_record_is_seen_through_its_studies_records(tmp_path):
    from dglmm.leaderboard.page import invocations, sessions_table

    out = tmp_path / "out"
    study = out / "data" / "model"
    study.mkdir(parents=True)
    (out / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in [
        {"started": "2026-01-01 10:00:00", "workers": 2, "to_run": 3},                  # cut: no record of its own
        {"started": "2026-01-01 12:00:00", "workers": 2, "to_run": 3},                  # cut, nothing recorded
        {"started": "2026-01-01 14:00:00", "workers": 2, "to_run": 1, "last": "2026-01-01 14:30:00",
         "finished": 1, "failed": 0, "interrupted": False}]))
    beat = datetime.datetime(2026, 1, 1, 10, 42, 7, tzinfo=datetime.UTC).timestamp()
    (study / "journal.log").write_text("\n".join([
        json.dumps({"op_code": 4, "datetime_start": "2026-01-01T10:00:05.1"}),
        json.dumps({"op_code": 8, "trial_id": 0, "user_attr": {"heartbeat": beat}}),
        "not json",
        json.dumps({"op_code": 6, "datetime_complete": "2026-01-01T14:20:00.0"})]))  # the third invocation's
    (study / "board.json").write_text(json.dumps({"sessions": [{"ended": "2026-01-01 10:31:00"}]}))
    (out / "data" / "other").mkdir()
    (out / "data" / "other" / "board.json").write_text(json.dumps({"sessions": [
        {"ended": "2026-01-01 14:10:00", "code": "abc1234"}, {"ended": "2026-01-01 14:20:00", "code": "abc1234"},
        {"ended": "2026-01-01 14:25:00", "code": "def5678+modified src:0123456789"}]}))
    seen = invocations(out)
    assert seen[0]["last"] == "2026-01-01 10:42:07" and seen[0]["from_studies"]
    assert "last" not in seen[1] and seen[2]["last"] == "2026-01-01 14:30:00" and "from_studies" not in seen[2]
    table = "\n".join(sessions_table(out))
    assert "| 1 | 2026-01-01 10:00 | 2026-01-01 10:42 ¹ | 42 min | 2 | 0 | ? |" in table
    assert "| 2 | 2026-01-01 12:00 | ? | ? | 2 | 0 | ? |" in table
    assert "| 3 | 2026-01-01 14:00 | 2026-01-01 14:30 | 30 min | 2 | 1 | all its studies done |" in table
    assert "Wall time of the 2 invocations seen running: 72 min (1 invocation without any record)." in table
    assert table.endswith("from the studies' records: `abc1234` (2 study runs); `def5678+modified src:0123456789` "
                          "(1 study run); 1 study run from before the records named their code.")


def test_the_code_a_study_runs_is_its_commit_or_a_hash_of_its_sources(tmp_path):
    import shutil

    from dglmm.leaderboard.runner import code_version

    # this checkout (its sources' hash alone where git is missing)
    assert re.fullmatch(r"[0-9a-f]{7,}(\+modified src:[0-9a-f]{10})?|src:[0-9a-f]{10}", code_version())
    shutil.copytree(ROOT / "dglmm", tmp_path / "copy" / "dglmm", ignore=shutil.ignore_patterns("__pycache__"))
    probe = [sys.executable, "-c", "from dglmm.leaderboard.runner import code_version; print(code_version())"]

    def version() -> str:
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "copy")}
        return subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()

    before = version()
    assert re.fullmatch(r"src:[0-9a-f]{10}", before)  # no git: the sources' hash
    with open(tmp_path / "copy" / "dglmm" / "models" / "mf.py", "a") as fh:
        fh.write("# a change\n")
    assert version() != before


def _live_processes_with(marker: str) -> list[int]:
    """Pids of the running (not zombie) processes whose environment holds ``marker``: a board and its workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes() \
                    and "\tZ" not in (entry / "status").read_text().split("State:")[1].splitlines()[0]:
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return pids


def _finished_trials(journal: Path) -> set[int]:
    """Trial ids that the Optuna journal shows complete or pruned (a half-written last line is skipped)."""
    done = set()
    for line in journal.read_text().splitlines() if journal.is_file() else []:
        try:
            op = json.loads(line)
        except ValueError:
            continue
        if op.get("op_code") == 6 and op.get("state") in (1, 2):
            done.add(op["trial_id"])
    return done


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_board_and_its_workers_and_the_board_resumes(tmp_path, capsys):
    from dglmm.leaderboard.runner import STOP_SECONDS

    spec = write_spec(tmp_path, ["mf", "lightgcn", "ngcf"])
    data = yaml.safe_load(spec.read_text())
    data["budget"].update(trials=4, seeds=1, epochs=6, patience=6, pruner="none")
    spec.write_text(yaml.safe_dump(data))
    args = board_args(tmp_path, spec, "--readme", "")
    out, mf = tmp_path / "out", tmp_path / "out" / "small" / "mf"
    assert main([*args, "--models", "mf"]) == 0  # one study finished before
    before = files_of(mf)

    # the rest with 2 workers, started in the background (SIGINT ignored, as under `nohup ... &`); SIGTERM to the
    # parent once both studies started and one trial finished
    marker = f"DGLMM_BOARD_TEST={uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", marker.split("=")[0]: marker.split("=")[1]}
    workers = [*args]
    workers[workers.index("--workers") + 1] = "2"
    log, err = tmp_path / "board.out", tmp_path / "board.err"
    with open(log, "w") as stdout, open(err, "w") as stderr:
        board = subprocess.Popen([sys.executable, "-m", "dglmm", *workers], stdout=stdout, stderr=stderr, env=env,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert _wait_for(lambda: log.read_text().count(" started (pid ") == 2 or board.poll() is not None, 120), \
            err.read_text()
        journals = [out / "small" / name / "journal.log" for name in ("lightgcn", "ngcf")]
        assert _wait_for(lambda: any(_finished_trials(j) for j in journals) or board.poll() is not None, 120)
        assert board.poll() is None, err.read_text()
        kept = {j.parent.name: _finished_trials(j) for j in journals}
        started = time.monotonic()
        board.send_signal(signal.SIGTERM)
        board.wait(STOP_SECONDS + 30)
        stopped = time.monotonic() - started
        assert _wait_for(lambda: not _live_processes_with(marker), 10), _live_processes_with(marker)
    finally:
        for pid in _live_processes_with(marker):
            os.kill(pid, signal.SIGKILL)
    worker_pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log.read_text())]
    # the workers get STOP_SECONDS to record their state, then the board records its own and writes the page
    assert board.returncode == 128 + signal.SIGTERM and stopped < STOP_SECONDS + 15, (board.returncode, stopped)
    assert "dglmm: interrupted; finished studies, trials and seeds are kept" in err.read_text()
    assert len(worker_pids) == 2 and not [p for p in worker_pids if Path(f"/proc/{p}").exists()]
    session = json.loads((out / "sessions.jsonl").read_text().splitlines()[-1])
    assert session["interrupted"] and session["finished"] == 0 and session["to_run"] == 2
    for name in kept:  # each worker recorded its study as interrupted
        assert json.loads((out / "small" / name / "board.json").read_text())["status"] == "interrupted"

    # the same command again (here in this process): MF untouched, the trials finished before the signal kept
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "3 studies, 1 finished, 2 to run" in text and "small lightgcn done" in text and "small ngcf done" in text, \
        [line for line in text.splitlines() if line.startswith("board:")]
    assert files_of(mf) == before
    for name, ids in kept.items():
        rows = trial_rows(out / "small" / name)
        finished = [int(r["number"]) for r in rows if r["state"] in ("complete", "pruned")]
        assert len(finished) == 4 and ids <= set(finished)


def _deaf_worker(ready) -> None:
    """A worker that ignores SIGTERM (stuck in native code, say)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(120)


def test_a_worker_that_does_not_stop_is_killed_after_the_grace_period(capsys):
    import multiprocessing

    from dglmm.leaderboard.runner import _stop

    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    worker = context.Process(target=_deaf_worker, args=(ready,), name="board deaf")
    worker.start()
    try:
        assert ready.wait(60)
        started = time.monotonic()
        _stop([worker], grace=0.5)
        assert time.monotonic() - started < 10 and worker.exitcode == -signal.SIGKILL
    finally:
        if worker.is_alive():
            worker.kill()
    err = capsys.readouterr().err
    assert f"stopping board deaf (pid {worker.pid})" in err and "did not stop within 0.5 s: killed" in err


def test_studies_run_in_the_order_of_datasets_then_models_given(tmp_path, monkeypatch):
    from dglmm.leaderboard import runner

    spec = write_spec(tmp_path, ["lightgcn", "mf", "vbpr"])
    data = yaml.safe_load(spec.read_text())
    data["datasets"]["other"] = {"title": "Other", "source": "synthetic", "options": {"n_users": 100, "n_items": 120}}
    spec.write_text(yaml.safe_dump(data))
    board = runner.plan_board(load_spec(spec), tmp_path / "out")
    order = []
    monkeypatch.setattr(runner, "run_study", lambda task: order.append(task["name"]))
    runner.run_board(board, workers=0, models=["vbpr", "lightgcn"], datasets=["other", "small"], progress=False)
    assert order == ["other vbpr", "other lightgcn", "small vbpr", "small lightgcn"]
    order.clear()
    runner.run_board(board, workers=0, progress=False)  # the specification's order (its keys sorted here)
    assert order == ["other lightgcn", "other mf", "other vbpr", "small lightgcn", "small mf", "small vbpr"]
