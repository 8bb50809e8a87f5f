"""dglmm tune: declared spaces, seeded reproducibility, pruning, validation-only trials, several workers on one
journal storage, resuming a killed study, and one-line errors that leave the study folder untouched."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dglmm.cli import main
from dglmm.config import section_classes
from dglmm.models import REGISTRY
from dglmm.options import Categorical, IntRange, LogUniform, Uniform, build, choices_of
from dglmm.train.trainer import Trainer
from dglmm.tune import TuneSettings, tune
from dglmm.tune.space import Dimension, sample, search_space
from tests.helpers import random_pairs, tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
FAST = ["train.epochs=6", "train.batch_size=64", "train.patience=3", "train.eval_chunk_size=64"]


def _settings(out: Path, **kw) -> TuneSettings:
    base = dict(model="lightgcn", dataset="tiny", trials=6, seeds=0, out=str(out), overrides=list(FAST),
                prune_startup_trials=1, prune_warmup_epochs=1)
    return TuneSettings(**{**base, **kw})


def _write_mmrec(directory: Path, n_users: int = 40, n_items: int = 30, n: int = 400) -> Path:
    """An MMRec ``.inter`` file (x_label 0/1/2 = train/valid/test) for the subprocess tests."""
    pairs = random_pairs(np.random.default_rng(3), n_users, n_items, n)
    labels = np.where(np.arange(n) < 0.7 * n, 0, np.where(np.arange(n) < 0.85 * n, 1, 2))
    directory.mkdir(parents=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t1\t{k}\t{lab}" for k, ((u, i), lab) in enumerate(zip(pairs, labels, strict=True))]
    (directory / f"{directory.name}.inter").write_text("\n".join(lines) + "\n")
    return directory


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dglmm", "tune", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _storage_trials(folder: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    return optuna.load_study(study_name=folder.name, storage=storage).get_trials(deepcopy=False)


# -- declared spaces ------------------------------------------------------------------------------------------
def _declared():
    for model, cls in sorted(REGISTRY.items()):
        for section, config_cls in section_classes(cls.Config).items():
            for f in dataclasses.fields(config_cls):
                if f.metadata.get("space") is not None or f.metadata.get("active_when"):
                    yield model, section, config_cls, f


def test_declared_spaces_stay_inside_each_options_range_and_choices():
    seen = set()
    for _model, section, config_cls, f in _declared():
        space = f.metadata.get("space")
        if space is not None:
            assert isinstance(space, LogUniform | Uniform | IntRange | Categorical)
            values = list(space.values())
            if isinstance(space, Uniform | LogUniform | IntRange):
                assert space.low < space.high
                values += [(space.low + space.high) / 2] if not isinstance(space, IntRange) else []
            if isinstance(space, LogUniform):
                assert space.low > 0
            for value in values:  # each end (and every choice) is a valid value of the option
                build(config_cls, {f.name: value}, section)
            seen.add(f"{section}.{f.name}")
        fields = {g.name for g in dataclasses.fields(config_cls)}
        for key, allowed in (f.metadata.get("active_when") or {}).items():
            assert key in fields, (f.name, key)
            choices = choices_of(config_cls, key)
            assert choices is None or set(allowed) <= set(choices), (f.name, key, allowed)
    assert {"train.lr", "model.reg_weight", "model.n_layers", "model.lambda_coeff"} <= seen


def test_models_verbose_shows_each_options_space(capsys):
    assert main(["models", "-v", "micro"]) == 0
    out = capsys.readouterr().out
    assert "model.lambda_coeff" in out and "[search: uniform 0.1..0.9 step 0.1" in out
    assert "when variant in micro" in out


class _Recorder:
    """A stand-in Optuna trial: returns the low end of every space and records what was asked."""

    def __init__(self):
        self.asked = []

    def suggest_float(self, name, low, high, log=False, step=None):
        self.asked.append(name)
        return low

    def suggest_int(self, name, low, high, step=1, log=False):
        self.asked.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        return choices[0]


def test_inactive_options_are_not_sampled_define_by_run():
    sections = section_classes(REGISTRY["micro"].Config)
    for variant, expect_cl in (("micro", True), ("w/o fusion", False)):
        config = {"data": {}, "graph": {}, "model": {"variant": variant}, "train": {}}
        dims = search_space(config, sections, {("model", "variant")}, {})
        trial = _Recorder()
        drawn = sample(trial, config, dims, sections)
        assert ("model.cl_weight" in trial.asked) == expect_cl
        assert ("cl_weight" in drawn["model"]) == expect_cl
        assert "model.lambda_coeff" in trial.asked and "train.lr" in trial.asked


def test_a_condition_on_a_searched_option_is_decided_after_it():
    sections = section_classes(REGISTRY["tmfun"].Config)
    config = {"data": {}, "graph": {}, "model": {"backbone": ["mf", "lightgcn"]}, "train": {}}
    dims = search_space(config, sections, set(), {})
    assert any(d.key == "model.backbone" and d.origin == "grid" for d in dims)
    trial = _Recorder()  # draws the first choice, mf: cf_layers is inactive and not asked
    drawn = sample(trial, config, list(reversed(dims)), sections)
    assert drawn["model"]["backbone"] == "mf" and "model.cf_layers" not in trial.asked
    assert trial.asked.index("model.backbone") >= 0


def test_set_fixes_a_value_narrows_a_range_or_lists_values(tmp_path):
    from dglmm.tune.study import plan_study

    plan = plan_study(_settings(tmp_path, overrides=FAST + ["train.lr=1e-3", "model.reg_weight=1e-5..1e-3",
                                                            "model.n_layers=[1,2]"]), "tiny")
    dims = {d.key: d for d in plan.dims}
    assert "train.lr" not in dims
    assert dims["model.reg_weight"].space == LogUniform(1e-5, 1e-3)
    assert dims["model.n_layers"].space == Categorical((1, 2))
    assert isinstance(Dimension("train", "lr", LogUniform(1e-4, 1e-2)).space, LogUniform)


# -- in-process studies ------------------------------------------------------------------------------------------
def test_seeded_tune_reproduces_the_same_trials(tmp_path):
    dataset = tiny_dataset(40, 30, 400, seed=1)
    tables = []
    for run in ("a", "b"):
        tune(_settings(tmp_path / run), dataset, progress=False)
        tables.append(pd.read_csv(tmp_path / run / "lightgcn-tiny" / "trials.csv").drop(columns="seconds"))
    assert len(tables[0]) == 6
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0]["train.lr"].nunique() == 6


def test_pruner_prunes_and_none_turns_it_off(tmp_path):
    dataset = tiny_dataset(40, 30, 400, seed=1)
    overrides = ["train.epochs=6", "train.batch_size=64", "train.patience=6", "train.lr=1e-5..1e-1"]
    tune(_settings(tmp_path / "on", trials=6, overrides=overrides), dataset, progress=False)
    on = pd.read_csv(tmp_path / "on" / "lightgcn-tiny" / "trials.csv")
    assert on["pruned"].any()
    assert (on.loc[on["pruned"], "epochs_run"] < 6).all()
    tune(_settings(tmp_path / "off", trials=4, overrides=overrides, pruner="none"), dataset, progress=False)
    off = pd.read_csv(tmp_path / "off" / "lightgcn-tiny" / "trials.csv")
    assert not off["pruned"].any() and (off["state"] == "complete").all()


def test_no_trial_computes_test_metrics(tmp_path, monkeypatch):
    calls = []
    original = Trainer.evaluate_per_user

    def spy(self, split, item_subset=None):
        calls.append(split)
        return original(self, split, item_subset)

    monkeypatch.setattr(Trainer, "evaluate_per_user", spy)
    result = tune(_settings(tmp_path, trials=4), tiny_dataset(40, 30, 400, seed=1), progress=False)
    assert result["finished"] == 4 and calls and set(calls) == {"valid"}
    calls.clear()
    result = tune(_settings(tmp_path, trials=4, seeds=2), tiny_dataset(40, 30, 400, seed=1), progress=False)
    assert result["ran"] == 0  # the budget was spent: only the best trial's seeds run, and they test
    assert calls.count("test") >= 2 and result["summary"]["test"]["recall@20"]["std"] >= 0
    folder = tmp_path / "lightgcn-tiny" / f"best-trial{result['best'].number}"
    assert {p.name for p in folder.iterdir()} >= {"seed0", "seed1", "summary.json"}
    assert (folder / "seed0" / "per_user_test.npz").is_file()


def test_outputs_reproduce_with_train_c(tmp_path):
    import yaml

    from dglmm.config import resolve_config

    tune(_settings(tmp_path, trials=3, seeds=0, pruner="none"), tiny_dataset(40, 30, 400, seed=1), progress=False)
    folder = tmp_path / "lightgcn-tiny"
    assert {"trials.csv", "config.yaml", "history.png", "importances.png", "study.yaml", "journal.log"} <= {
        p.name for p in folder.iterdir()}
    table = pd.read_csv(folder / "trials.csv")
    assert {"number", "state", "value", "pruned", "epochs_run", "seconds", "train.lr"} <= set(table.columns)
    best = table.loc[table["value"].idxmax()]
    config = resolve_config("lightgcn", "tiny", [str(folder / "config.yaml")],
                            model_config=REGISTRY["lightgcn"].Config)
    assert config["train"]["lr"] == pytest.approx(best["train.lr"])
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["train"]["epochs"] == 6
    assert (written["model_name"], written["dataset"]) == ("lightgcn", "tiny")  # dglmm train -c config.yaml


def test_an_interrupted_trial_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(tmp_path, monkeypatch):
    dataset = tiny_dataset(40, 30, 400, seed=1)
    settings = dict(trials=3, pruner="none", overrides=["train.epochs=6", "train.batch_size=64",
                                                         "train.patience=6", "train.eval_chunk_size=64"])
    tune(_settings(tmp_path / "whole", **settings), dataset, progress=False)
    whole = pd.read_csv(tmp_path / "whole" / "lightgcn-tiny" / "trials.csv").set_index("number")

    fits, original_fit, original_epoch = [], Trainer.fit_validation, Trainer.train_epoch

    def counting_fit(self):
        fits.append(self.start_epoch)
        return original_fit(self)

    def stopped_in_epoch_4_of_trial_1(self, epoch):
        if len(fits) == 2 and epoch == 3:
            raise KeyboardInterrupt
        return original_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "fit_validation", counting_fit)
    monkeypatch.setattr(Trainer, "train_epoch", stopped_in_epoch_4_of_trial_1)
    with pytest.raises(KeyboardInterrupt):
        tune(_settings(tmp_path / "cut", **settings), dataset, progress=False)
    folder = tmp_path / "cut" / "lightgcn-tiny"
    assert (folder / "trials" / "1" / "checkpoint.pt").is_file()
    tune(_settings(tmp_path / "cut", **settings), dataset, progress=False)
    assert fits[2] == 3  # the resumption starts at the epoch the interruption lost
    cut = pd.read_csv(folder / "trials.csv").set_index("number")
    assert cut.loc[1, "state"] == "fail" and "KeyboardInterrupt" in cut.loc[1, "note"]
    assert cut.loc[2, "note"] == "resumes trial 1 after epoch 3"
    params = [c for c in whole.columns if c.startswith(("train.", "model."))]
    assert cut.loc[2, params].tolist() == whole.loc[1, params].tolist()
    for column in ("value", "epochs_run", "best_epoch"):
        assert cut.loc[2, column] == whole.loc[1, column], column
    assert not (folder / "trials" / "1").exists()  # the resumption took the folder over
    assert len((folder / "trials" / "2" / "metrics.jsonl").read_text().splitlines()) == whole.loc[1, "epochs_run"]
    assert not list(folder.glob("trials/*/*.pt"))
    assert len(cut[cut["state"].isin(["complete", "pruned"])]) == 3


def _chain(reached: list[int], stopped: list[bool]) -> list:
    """Run one configuration again and again: run k reports validations up to epoch ``reached[k]`` and ends by
    a stop signal (``stopped[k]``) or with its worker dead; returns the runs until it is given up."""
    import optuna

    from dglmm.tune.study import enqueue_resumption

    study = optuna.create_study(direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    runs, trial = [], study.ask(space)
    for k, (epochs, signal_stop) in enumerate(zip(reached, stopped, strict=True)):
        if k:
            trial = study.ask(space)
            assert trial.params == runs[0].params and trial.user_attrs["resumes"] == runs[-1].number
        for epoch in range(1, epochs + 1):
            trial.report(0.1, epoch)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        runs.append(study.get_trials()[-1])
        if not enqueue_resumption(study, runs[-1], stopped=signal_stop):
            break
    return runs


def test_a_configuration_is_given_up_after_attempts_dead_runs_in_a_row_without_progress():
    from dglmm.tune.study import ATTEMPTS

    assert len(_chain([0] * 10, [False] * 10)) == ATTEMPTS  # kills its worker before any validation, every time
    assert len(_chain([3] * 10, [False] * 10)) == 1 + ATTEMPTS  # the first got somewhere, then never further
    assert len(_chain(list(range(1, 11)), [False] * 10)) == 10  # each run got further: never given up
    assert len(_chain([0] * 10, [True] * 10)) == 10  # Ctrl-C or SIGTERM: never counts
    assert len(_chain([2] * 10, [False, True] * 5)) == 1 + 2 * ATTEMPTS  # the stops between dead runs do not count


# -- several processes, killed and resumed ------------------------------------------------------------------------
def _common(data: Path, out: Path, trials: int) -> list[str]:
    return ["-m", "lightgcn", "-d", str(data), "--trials", str(trials), "--seeds", "0", "--out", str(out),
            "--prune-startup-trials", "1", "--prune-warmup-epochs", "1"] + [f"--set={s}" for s in FAST]


def test_two_processes_on_one_journal_finish_exactly_n_trials(tmp_path):
    data = _write_mmrec(tmp_path / "toy")
    args = _common(data, tmp_path / "out", 7)
    procs = [_cli(args) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    trials = _storage_trials(tmp_path / "out" / "lightgcn-toy")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 7
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert [t for t in trials if t.state.name == "FAIL"] == [t for t in trials if t.user_attrs.get("surplus")]
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == 7  # no configuration run twice
    table = pd.read_csv(tmp_path / "out" / "lightgcn-toy" / "trials.csv")
    assert len(table) == 7 and table["number"].is_unique


def test_killed_tune_resumes_to_n_trials_without_rerunning_finished_ones(tmp_path):
    data = _write_mmrec(tmp_path / "toy")
    folder = tmp_path / "out" / "lightgcn-toy"
    # trials long enough (no early stop, no pruning) that the kill lands between the 2nd and the 6th on any machine
    slow = ["--pruner", "none", "--set=train.epochs=150", "--set=train.patience=150"]
    first = _cli(_common(data, tmp_path / "out", 6) + slow)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if (folder / "trials.csv").is_file() and len(pd.read_csv(folder / "trials.csv")) >= 2:
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    before = {t.number: t.value for t in _storage_trials(folder) if t.state.name in ("COMPLETE", "PRUNED")}
    assert 2 <= len(before) < 6
    second = _cli(["--resume", str(folder)])
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    trials = _storage_trials(folder)
    finished = {t.number: t.value for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(finished) == 6
    assert all(finished[n] == v for n, v in before.items())  # kept, not run again
    assert all(t.state.name != "RUNNING" for t in trials)
    rerun = [t for t in trials if t.number not in before and t.state.name in ("COMPLETE", "PRUNED")]
    assert rerun and all(t.user_attrs["worker"].rsplit(":", 1)[1] != str(first.pid) for t in rerun)
    killed = [t for t in trials if t.state.name == "FAIL"]
    assert killed and all("stopped" in t.user_attrs["interrupted"] for t in killed)
    resumed = {t.user_attrs.get("resumes"): t for t in rerun}
    # the killed trials' configurations, resumed (a trial killed before it drew one has none: its slot is run anew)
    assert all(resumed[t.number].params == t.params for t in killed if t.params)
    assert not list(folder.glob("trials/*/checkpoint.pt"))  # finished trials keep only their curves


def test_a_trial_whose_worker_died_before_naming_itself_is_reclaimed_and_its_slot_run(tmp_path, monkeypatch):
    """A worker killed between asking for a trial and naming itself on it leaves a RUNNING trial with no worker:
    a live peer's fresh trial looks the same, so it is reclaimed only after UNCLAIMED_AFTER seconds."""
    import optuna

    from dglmm.tune import study as study_module

    dataset = tiny_dataset(40, 30, 400, seed=1)
    tune(_settings(tmp_path, trials=2), dataset, progress=False)
    folder = tmp_path / "lightgcn-tiny"
    storage = study_module.open_storage(_settings(tmp_path, trials=2))
    study = optuna.load_study(study_name=folder.name, storage=storage)
    orphan = study.ask()  # ... and the worker is killed before it names itself
    assert study_module.reclaim_stale(study, 3600, study_module.slot_lock(_settings(tmp_path))) == 0  # as young as a live peer's: kept
    monkeypatch.setattr(study_module, "UNCLAIMED_AFTER", 0.5)
    result = tune(_settings(tmp_path, trials=3), dataset, progress=False)
    trials = _storage_trials(folder)
    assert result["finished"] == 3 and result["running"] == 0
    assert [t.state.name for t in trials].count("RUNNING") == 0
    assert trials[orphan.number].state.name == "FAIL" and "stopped" in trials[orphan.number].user_attrs["interrupted"]


def test_a_peer_asking_while_a_dead_workers_trial_is_reclaimed_takes_its_resumption(tmp_path, monkeypatch):
    """Worker A fails a dead worker's trial and enqueues its resumption; worker B, asking for a slot between the
    two, must not draw a fresh trial into the freed slot (the resumption would then wait forever, the dead trial's
    configuration never finished): B waits for the reclaim and takes the resumption."""
    import threading

    import optuna

    from dglmm.tune import study as study_module

    dataset = tiny_dataset(40, 30, 400, seed=1)
    tune(_settings(tmp_path, trials=2), dataset, progress=False)
    settings = _settings(tmp_path, trials=3)
    plan = study_module.plan_study(settings, dataset.name)
    studies = [study_module.open_study(plan, study_module.open_storage(settings)) for _ in range(2)]
    finished = studies[0].trials[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    studies[0].add_trial(optuna.trial.create_trial(  # its worker was killed while it trained
        state=optuna.trial.TrialState.RUNNING, params=finished.params, distributions=finished.distributions,
        user_attrs={"worker": f"{socket.gethostname()}:{dead.pid}", "heartbeat": time.time()}))
    enqueue, peers = study_module.enqueue_resumption, []

    def peer_asks_in_between(*args, **kwargs):  # worker B runs between A's FAIL and A's enqueue
        if not peers:
            peers.append(threading.Thread(target=study_module.Worker(plan, studies[1], dataset, False).run))
            peers[0].start()
            peers[0].join(timeout=3)  # long enough for B to ask, were the slot open to it
        return enqueue(*args, **kwargs)

    monkeypatch.setattr(study_module, "enqueue_resumption", peer_asks_in_between)
    study_module.Worker(plan, studies[0], dataset, False).run()
    peers[0].join(timeout=300)
    trials = _storage_trials(tmp_path / "lightgcn-tiny")
    assert trials[2].state.name == "FAIL" and "stopped" in trials[2].user_attrs["interrupted"]
    assert [t.state.name for t in trials].count("WAITING") == 0  # no resumption left behind
    resumed = [t for t in trials if t.user_attrs.get("resumes") == 2]
    assert len(resumed) == 1 and resumed[0].state.name in ("COMPLETE", "PRUNED")
    assert resumed[0].params == finished.params
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3


def test_two_workers_never_reclaim_the_same_dead_trial(tmp_path, monkeypatch):
    """Worker B saw a dead worker's trial running; worker A reclaimed it first.  B re-reads it under the slot
    lock and leaves it (before: B's write to the finished trial raised, killing B, or enqueued it twice)."""
    import optuna

    from dglmm.tune import study as study_module

    settings = _settings(tmp_path)
    plan = study_module.plan_study(settings, "tiny")
    a, b = (study_module.open_study(plan, study_module.open_storage(settings)) for _ in range(2))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    a.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params={"train.lr": 1e-3},
        distributions={"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        user_attrs={"worker": f"{socket.gethostname()}:{dead.pid}"}))
    seen_by_b = b.get_trials(deepcopy=True, states=(optuna.trial.TrialState.RUNNING,))
    assert len(seen_by_b) == 1
    slots = study_module.slot_lock(settings)
    assert study_module.reclaim_stale(a, 3600, slots) == 1
    monkeypatch.setattr(b, "get_trials", lambda **kw: seen_by_b)
    assert study_module.reclaim_stale(b, 3600, slots) == 0
    states = [t.state.name for t in _storage_trials(tmp_path / "lightgcn-tiny")]
    assert states == ["FAIL", "WAITING"]  # one resumption
    assert not (tmp_path / "lightgcn-tiny" / "journal.log.slots.lock").exists()  # released


def test_a_stop_signal_during_a_storage_call_waits_for_the_call_to_finish(tmp_path):
    """SIGTERM while a journal write runs: the write completes (file lock released, replay applied), then the
    interrupt; the trial can then be failed, as an interrupted trial is."""
    import optuna

    from dglmm.interrupts import terminate_as_interrupt
    from dglmm.tune.study import open_storage

    storage = open_storage(_settings(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    backend, append = storage._backend, storage._backend.append_logs

    def signalled_append(logs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler would run here, between the bytecodes of this write
        append(logs)

    backend.append_logs = signalled_append
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        study.ask()
    backend.append_logs = append
    assert not Path(backend._file_path + ".lock").exists()
    [trial] = study.get_trials(deepcopy=False)
    assert trial.state.name == "RUNNING"
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    assert study.get_trials(deepcopy=False)[0].state.name == "FAIL"


def test_sigterm_fails_the_running_trial_keeps_the_others_and_exits_143(tmp_path, capsys, monkeypatch):
    data = _write_mmrec(tmp_path / "toy")
    original, calls, handler = Trainer.fit_validation, [], signal.getsignal(signal.SIGTERM)

    def killed_in_second(self):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` during the second trial
        return original(self)

    monkeypatch.setattr(Trainer, "fit_validation", killed_in_second)
    with pytest.raises(SystemExit) as stopped:
        main(["tune", *_common(data, tmp_path / "out", 3)])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "dglmm: interrupted; finished trials are kept" in capsys.readouterr().err
    trials = _storage_trials(tmp_path / "out" / "lightgcn-toy")
    assert [t.state.name for t in trials][1:] == ["FAIL", "WAITING"] and trials[0].state.name in ("COMPLETE",
                                                                                                  "PRUNED")
    assert trials[1].user_attrs["interrupted"].startswith("KeyboardInterrupt")
    # the interrupted configuration waits to be resumed by the next worker
    assert trials[2].system_attrs["fixed_params"] == trials[1].params and trials[2].user_attrs["resumes"] == 1
    assert signal.getsignal(signal.SIGTERM) == handler  # the command's handler is gone after it


# -- bad input ---------------------------------------------------------------------------------------------------
def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.exists() else {}


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """A finished two-trial study ``s`` that every bad-input case must leave as it is."""
    root = tmp_path_factory.mktemp("bad-input")
    data = _write_mmrec(root / "toy")
    base = ["tune", *_common(data, root / "out", 2), "--study", "s"]
    assert main(base) == 0
    return base, root / "out" / "s"


@pytest.mark.parametrize("extra, message", [
    (["--set", "model.nope=[1,2]"], "unknown model option"),
    (["--set", "train.lr=1e-2..1e-4"], "low end must be below"),
    (["--set", "train.lr=a..b"], "two numbers"),
    (["--set", "model.adjacency=1..2"], "numeric option"),
    (["--set", "train.lr=-1..1"], "train.lr must be"),
    (["--storage", "sqlite:////nonexistent-dir/sub/x.db"], "--storage"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["-m", "mf"], "belongs to model 'lightgcn'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_overwritten(small_study, capsys, extra, message):
    base, folder = small_study
    before = _snapshot(folder)
    capsys.readouterr()
    assert main(base + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dglmm: error:") and message in err[0], err
    assert _snapshot(folder) == before


def test_a_journal_lock_left_by_a_killed_worker_is_broken(tmp_path):
    from dglmm.tune.study import _file_lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal = tmp_path / "journal.log"
    (tmp_path / "journal.log.lock").write_text(f"{socket.gethostname()}:{dead.pid}")
    lock = _file_lock(str(journal))
    started = time.time()
    assert lock.acquire() and time.time() - started < 5
    lock.release()
    assert not (tmp_path / "journal.log.lock").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
def test_a_zombie_or_a_reused_pid_is_not_a_live_worker():
    from dglmm.tune.study import _alive, worker_id

    host = socket.gethostname()
    me = worker_id()
    assert me.startswith(f"{host}:{os.getpid()}@") and _alive(me) is True
    assert _alive(f"{host}:{os.getpid()}") is True  # ids written before start times were recorded
    assert _alive(f"{host}:{os.getpid()}@1") is False  # the same pid, another process (reused)
    assert _alive(f"elsewhere.example:{os.getpid()}") is None
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, not reaped until wait()
    deadline = time.time() + 30
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.time() < deadline
        time.sleep(0.05)
    assert _alive(f"{host}:{zombie.pid}") is False
    zombie.wait()
    assert _alive(f"{host}:{zombie.pid}") is False


def test_sqlite_storage_holds_the_study(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = tune(_settings(tmp_path, trials=2, storage=url), tiny_dataset(40, 30, 400, seed=1), progress=False)
    assert result["finished"] == 2
    assert len(optuna.load_study(study_name="lightgcn-tiny", storage=url).trials) == 2
    assert not (tmp_path / "lightgcn-tiny" / "journal.log").exists()
