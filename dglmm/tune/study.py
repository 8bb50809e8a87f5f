"""``dglmm tune``: an equal-budget search on Optuna, durable in its storage, shared by any number of workers.

A study is the search of one model on one dataset.  Its settings (model, dataset, ``--set`` overrides, search
space, trial budget, epoch cap, patience, metric, sampler seed, pruner) are recorded in the storage and in
``study.yaml``; a worker that opens the study with other settings is refused.  Each worker loops:

1. fail the trials of dead workers (same host: the process is gone; any host: no heartbeat for
   ``stale_after`` seconds; a trial that names no worker :data:`UNCLAIMED_AFTER` seconds after it was asked:
   its worker died between asking and naming itself), so that their slots are run again;
2. stop when finished + running trials reach the budget (waiting while one of them names no worker yet), else
   ``ask`` a trial (a waiting resumption first) and name itself on it.  Step 1's "fail, then enqueue the
   resumption" and this step's "count, ask, name" each run under the study's slot lock (:func:`slot_lock`), so
   that no worker draws a fresh trial into a slot whose resumption is on its way.  A worker keeps its trial
   only if fewer than ``budget`` live trials have a lower number (trial numbers are assigned atomically by the
   storage, so even workers that share the storage but not the lock never both take the last slot: the
   loser's trial is closed as a ``surplus`` failure, never run);
3. draw the trial's configuration (:func:`dglmm.tune.space.sample`, TPE seeded with ``seed + trial number``),
   train it on the train split and select on validation (:meth:`dglmm.train.trainer.Trainer.fit_validation`:
   test metrics are never computed), reporting the best validation metric so far after every validation to
   the pruner;
4. rewrite ``trials.csv`` and ``config.yaml`` (the best configuration so far, for ``dglmm train -c``).

A trial checkpoints every epoch into ``trials/<number>/`` (removed when it finishes; its ``metrics.jsonl``, the
trial's learning curve, stays).  An interrupted trial (Ctrl-C, SIGTERM, a killed worker found in step 1) is
failed and its configuration enqueued as a new trial that resumes from that checkpoint, with its reports to the
pruner replayed: a resumed trial ends exactly as it would have without the interruption.  A configuration whose
worker died :data:`ATTEMPTS` times in a row without reaching a new validation is given up (it kills its worker
every time); a stop by Ctrl-C or SIGTERM never counts, nor does a run that got further than the one before.

When every trial is finished, one worker (a claim file decides which) re-runs the best trial with ``seeds``
seeds into ``best-trial<N>/seed<i>`` (run folders that ``dglmm compare`` reads) and writes the PNGs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from dglmm.config import TrainConfig, instantiate, parse_override
from dglmm.errors import InputError
from dglmm.interrupts import deferred_stop_signals, stop_requested
from dglmm.io import write_json, write_text
from dglmm.tune.space import Dimension, sample, search_space, split_ranges

JOURNAL = "journal.log"
#: seconds after which another host's journal lock counts as abandoned
LOCK_STALE = 60.0
PRUNERS = ("median", "hyperband", "none")
#: a configuration whose worker died this many times in a row, each run reaching no new validation, is given up
ATTEMPTS = 3
#: a worker names itself on a trial right after asking for it; a trial still unnamed this long after it was
#: asked belongs to a worker that was killed in between, and is failed (and resumed) like a dead worker's
UNCLAIMED_AFTER = 20.0
#: the settings that define a study; a worker with other values is refused (``trials``/``seeds`` may change)
DEFINING = ("model", "dataset", "overrides", "space", "metric", "epochs", "patience", "seed", "pruner",
            "startup_trials")


@dataclasses.dataclass
class TuneSettings:
    """What ``dglmm tune`` was asked to do (recorded in ``study.yaml`` and in the storage)."""

    model: str
    dataset: str
    trials: int
    seeds: int = 3
    overrides: list[str] = dataclasses.field(default_factory=list)
    study: str | None = None
    storage: str | None = None
    out: str = "runs/tune"
    seed: int = 2024
    pruner: str = "median"
    prune_startup_trials: int = 5
    prune_warmup_epochs: int = 10
    startup_trials: int = 10
    stale_after: float = 3600.0

    def check(self) -> None:
        """One-line InputErrors for impossible budgets and pruner settings."""
        if self.trials < 1:
            raise InputError(f"--trials must be at least 1, got {self.trials}")
        if self.seeds < 0:
            raise InputError(f"--seeds must be 0 or more, got {self.seeds}")
        if self.pruner not in PRUNERS:
            raise InputError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        for name in ("prune_startup_trials", "prune_warmup_epochs", "startup_trials"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if self.stale_after <= 0:
            raise InputError(f"--stale-after must be positive, got {self.stale_after}")
        if self.study is not None and (not self.study or "/" in self.study or self.study.startswith(".")):
            raise InputError(f"--study {self.study!r}: a study name is a plain folder name")

    @property
    def name(self) -> str:
        return self.study or f"{self.model}-{Path(self.dataset).name}"

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name


@dataclasses.dataclass
class Plan:
    """A resolved study: base config, dimensions and the recorded definition."""

    settings: TuneSettings
    config: dict
    sections: dict[str, type]
    dims: list[Dimension]
    definition: dict

    @property
    def metric(self) -> str:
        return self.definition["metric"]


def plan_study(settings: TuneSettings, dataset_name: str) -> Plan:
    """Check the settings and resolve the config and the search space; raises before anything is written."""
    from dglmm.train.run import model_sections, resolve_model_config

    settings.check()
    sections = model_sections(settings.model)
    plain, ranges = split_ranges(settings.overrides, sections)
    config = resolve_model_config(settings.model, dataset_name, [], plain)
    set_keys = {parse_override(text, sections)[:2] for text in plain}
    dims = search_space(config, sections, set_keys, ranges)
    if not dims:
        raise InputError("nothing to search: every option with a search space is fixed by --set")
    train = instantiate(TrainConfig, {k: v for k, v in config["train"].items() if not isinstance(v, list)})
    if any(d.key in ("train.metric", "train.seed", "train.epochs") for d in dims):
        raise InputError("train.metric, train.seed and train.epochs cannot be searched: they define the budget")
    pruner = {"name": settings.pruner}
    if settings.pruner != "none":
        pruner.update(startup_trials=settings.prune_startup_trials, warmup_epochs=settings.prune_warmup_epochs)
    definition = {"model": settings.model, "dataset": dataset_name, "overrides": list(settings.overrides),
                  "space": [str(d) for d in dims], "metric": train.metric, "epochs": train.epochs,
                  "patience": train.patience, "seed": train.seed, "pruner": pruner,
                  "startup_trials": settings.startup_trials}
    return Plan(settings, config, sections, dims, definition)


# -- storage and study ------------------------------------------------------------------------------------
def open_storage(settings: TuneSettings) -> Any:
    """The Optuna storage: a journal file (default ``<study folder>/journal.log``, or a path given with
    ``--storage``) or an RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql+pymysql://...``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    url, path = settings.storage, _journal_path(settings)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with deferred_stop_signals():
                storage = JournalStorage(JournalFileBackend(str(path), lock_obj=_file_lock(str(path))))
            storage._thread_lock = _SignalSafeLock()  # every storage call holds it (optuna 4.1)
            return storage
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # noqa: BLE001 - any failure to reach a storage is a problem of the given URL
        shown = url or str(settings.folder / JOURNAL)
        raise InputError(f"--storage {shown}: cannot open it ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})") from None


class _SignalSafeLock:
    """The journal storage's in-process lock, which also holds back Ctrl-C and SIGTERM while a storage call runs:
    a call cut in the middle could leave the journal's file lock taken (every later call then waits) or the
    in-memory replay of the journal half-applied (the interrupted trial could not then be failed and resumed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deferred: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> None:
        deferred = deferred_stop_signals()
        deferred.__enter__()
        self._lock.acquire()
        self._deferred = deferred

    def __exit__(self, *exc: object) -> None:
        deferred, self._deferred = self._deferred, None
        self._lock.release()
        deferred.__exit__(None, None, None)


def _file_lock(path: str) -> Any:
    """Optuna's journal file lock (``O_EXCL`` on ``<path>.lock``, NFSv3-safe) that also breaks the lock of
    a killed worker: same host, its process is gone; another host, held for more than ``LOCK_STALE`` seconds
    (a journal write or a slot step takes milliseconds).  Optuna's own locks wait forever for a SIGKILLed
    holder."""
    from optuna.storages.journal._file import BaseJournalFileLock  # not re-exported by optuna 4.1

    class StaleBreakingLock(BaseJournalFileLock):
        def __init__(self, target: str) -> None:
            self.lock_file = target + ".lock"

        def acquire(self) -> bool:
            pause = 0.001
            while True:
                try:
                    fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    self._break_if_stale()
                    time.sleep(pause)
                    pause = min(2 * pause, 0.2)
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(worker_id())
                return True

        def release(self) -> None:
            try:
                os.unlink(self.lock_file)
            except OSError:
                raise RuntimeError("Error: did not possess lock") from None

        def _break_if_stale(self) -> None:
            try:  # Optuna's own lock (optuna-dashboard, a plain JournalFileBackend) is a symlink: age only
                link = os.path.islink(self.lock_file)
                owner = "" if link else Path(self.lock_file).read_text().strip()
                age = time.time() - os.lstat(self.lock_file).st_mtime
            except OSError:
                return
            alive = _alive(owner) if owner else None
            if alive is False or (alive is None and age > LOCK_STALE):
                aside = f"{self.lock_file}.{worker_id()}.stale"
                try:
                    os.rename(self.lock_file, aside)
                except OSError:
                    return
                if not link and Path(aside).read_text().strip() != owner:  # a fresh lock: give it back
                    try:
                        os.link(aside, self.lock_file)
                    except OSError:
                        pass
                os.unlink(aside)

    return StaleBreakingLock(path)


def slot_lock(settings: TuneSettings) -> Any:
    """The study's slot lock (:func:`_file_lock`): beside the journal file, which every worker of a journal
    study shares, or with an RDB storage in the study folder (shared by workers that resume each other's
    checkpoints).  Held with :func:`_holding`."""
    journal = _journal_path(settings)
    return _file_lock(str(journal) + ".slots" if journal else str(settings.folder / "slots"))


def _journal_path(settings: TuneSettings) -> Path | None:
    """The journal file of a journal storage (``--storage PATH`` or the study folder's), None for an RDB URL."""
    url = settings.storage
    if url is not None and "://" in url:
        return None
    return Path(url) if url else settings.folder / JOURNAL


@contextlib.contextmanager
def _holding(lock: Any) -> Any:
    """Hold a file lock for a block, with Ctrl-C and SIGTERM held back until it is released (a stop in the
    middle would leave the lock taken or a trial failed without its resumption)."""
    with deferred_stop_signals():
        lock.acquire()
        try:
            yield
        finally:
            lock.release()


def _engine_kwargs(url: str) -> dict:
    """SQLite: wait for the other workers' transactions instead of failing at once."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def open_study(plan: Plan, storage: Any) -> Any:
    """Create the study or load it; refuse one defined by other settings (another model or dataset above all)."""
    import optuna

    name = plan.settings.name
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(plan, 0))
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                        sampler=_sampler(plan, 0), pruner=_pruner(plan))
            study.set_user_attr("dglmm", plan.definition)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it in the meantime
            study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(plan, 0))
    recorded = study.user_attrs.get("dglmm")
    for _ in range(50):  # the creating worker sets the definition just after creating the study
        if recorded is not None:
            break
        time.sleep(0.1)
        recorded = optuna.load_study(study_name=name, storage=storage).user_attrs.get("dglmm")
    _check_definition(name, recorded, plan.definition)
    study.pruner = _pruner(plan)
    return study


def _check_definition(name: str, recorded: dict | None, wanted: dict) -> None:
    if recorded is None:
        raise InputError(f"study {name!r} exists in this storage but was not created by dglmm tune")
    for key in ("model", "dataset"):
        if recorded.get(key) != wanted[key]:
            raise InputError(f"study {name!r} belongs to {key} {recorded.get(key)!r}, not {wanted[key]!r}; "
                             "choose another --study name")
    differ = [k for k in DEFINING if recorded.get(k) != wanted.get(k)]
    if differ:
        raise InputError(f"study {name!r} was created with other settings ({', '.join(differ)}: "
                         f"{', '.join(f'{k}={recorded.get(k)!r}' for k in differ)}); resume it with the same "
                         "--set and pruner options, or choose another --study name")


def _sampler(plan: Plan, offset: int) -> Any:
    """TPE seeded with the study's seed + ``offset``; ``constant_liar`` keeps parallel workers apart."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=plan.definition["seed"] + offset, constant_liar=True,
                                          n_startup_trials=plan.definition["startup_trials"])


def _pruner(plan: Plan) -> Any:
    """Median pruning of the best-so-far validation metric suits early-stopped training: a trial stops when
    its best at an epoch is below the median of earlier trials' bests at that epoch (after ``warmup`` epochs
    and ``startup`` finished trials); Hyperband with the epoch cap as maximum resource; or no pruning."""
    import optuna

    pruner = plan.definition["pruner"]
    if pruner["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner["startup_trials"],
                                           n_warmup_steps=pruner["warmup_epochs"])
    if pruner["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, pruner["warmup_epochs"]),
                                              max_resource=plan.definition["epochs"])
    return optuna.pruners.NopPruner()


# -- the worker ---------------------------------------------------------------------------------------------
def worker_id() -> str:
    """``host:pid``, and ``@start`` (the process's start time in clock ticks) where ``/proc`` tells it, so that a
    later process that gets the same pid is not taken for this one."""
    started = _process_state(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f"@{started[1]}" if started else "")


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a process from ``/proc/<pid>/stat`` (Linux), None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _alive(worker: str | None) -> bool | None:
    """Whether a worker ``host:pid[@start]`` still runs (None: it runs on another host, unknown).  A zombie (exited,
    not yet reaped) is not running, nor is a process that reuses the pid with another start time."""
    if not worker or ":" not in worker:
        return None
    host, pid = worker.rsplit(":", 1)
    pid, _, started = pid.partition("@")
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    state = _process_state(int(pid))
    if state is not None and (state[0] == "Z" or (started and state[1] != started)):
        return False
    return True


def reclaim_stale(study: Any, stale_after: float, slots: Any) -> int:
    """Fail the RUNNING trials of dead workers and enqueue their resumptions, each under the slot lock
    ``slots`` (:func:`slot_lock`); returns how many."""
    from optuna.trial import TrialState

    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _stale(trial, stale_after):
            continue
        with _holding(slots):
            trial = study._storage.get_trial(trial._trial_id)  # another worker may have reclaimed it meanwhile
            if trial.state != TrialState.RUNNING or not _stale(trial, stale_after):
                continue
            worker = trial.user_attrs.get("worker")
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", f"worker {worker} stopped")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            enqueue_resumption(study, trial, stopped=False)
            count += 1
    return count


def _stale(trial: Any, stale_after: float) -> bool:
    """Whether a running trial's worker is dead: its process is gone (same host), it sent no heartbeat for
    ``stale_after`` seconds (another host), or it never named itself within :data:`UNCLAIMED_AFTER` seconds."""
    worker = trial.user_attrs.get("worker")
    alive = _alive(worker)
    beat = trial.user_attrs.get("heartbeat", _asked(trial))
    if worker is None:
        alive, stale_after = None, UNCLAIMED_AFTER
    return alive is False or (alive is None and time.time() - beat > stale_after)


def _asked(trial: Any) -> float:
    """When a trial was asked for (its start), as a timestamp; 0 when unknown."""
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


def _unclaimed(trials: list) -> bool:
    """Whether a running trial names no worker yet (just asked for, or its worker was killed right after)."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.RUNNING and "worker" not in t.user_attrs for t in trials)


def enqueue_resumption(study: Any, trial: Any, stopped: bool) -> bool:
    """Enqueue an interrupted trial's configuration as a new trial that resumes from its checkpoint (see the
    module's docstring).  ``stopped``: by a stop signal, which never counts against the configuration; a dead
    worker's run counts unless it reached a validation further than the run before.  False when the
    configuration is given up (:data:`ATTEMPTS` counted runs in a row) or has no parameters."""
    reached = max(trial.intermediate_values, default=0)
    stalls = int(trial.user_attrs.get("stalls", 0))
    if not stopped:
        stalls = stalls + 1 if reached <= int(trial.user_attrs.get("reached", 0)) else 0
    if stalls >= ATTEMPTS or not trial.params:
        return False
    study.enqueue_trial(dict(trial.params), user_attrs={"resumes": trial.number, "reached": reached,
                                                        "stalls": stalls})
    return True


def _drop_checkpoints(folder: Path) -> None:
    """Remove a trial folder's ``checkpoint.pt`` and ``best.pt`` (its ``metrics.jsonl`` stays)."""
    for name in ("checkpoint.pt", "best.pt"):
        (folder / name).unlink(missing_ok=True)


def trial_folder(settings: TuneSettings, number: int) -> Path:
    """Where trial ``number`` checkpoints (``checkpoint.pt``, ``best.pt``) and logs (``metrics.jsonl``)."""
    return settings.folder / "trials" / str(number)


#: what :meth:`Worker._take_slot` returns while a live trial names no worker yet
_WAIT = object()


def _live(trials: list) -> list:
    from optuna.trial import TrialState

    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]


class Worker:
    """One process working on a study until its budget is spent."""

    def __init__(self, plan: Plan, study: Any, dataset: Any, progress: bool = True) -> None:
        self.plan, self.study, self.dataset = plan, study, dataset
        self.progress = progress
        self.folder = plan.settings.folder
        self.slots = slot_lock(plan.settings)
        self.ran = 0

    def run(self) -> int:
        """Run trials until finished + running ones reach the budget; returns how many this worker ran."""
        from tqdm import tqdm

        budget = self.plan.settings.trials
        bar = tqdm(total=budget, desc=f"tune {self.plan.settings.name}", unit="trial", leave=False,
                   disable=not (self.progress and sys.stderr.isatty()))
        try:
            while True:
                reclaim_stale(self.study, self.plan.settings.stale_after, self.slots)
                bar.n = min(_finished(self.study), budget)
                bar.refresh()
                trial = self._take_slot()
                if trial is _WAIT:
                    time.sleep(1.0)  # reclaimed by step 1 once UNCLAIMED_AFTER has passed, or named meanwhile
                    continue
                if trial is None:
                    break
                self._run_trial(trial, bar)
                self.ran += 1
                write_outputs(self.plan, self.study, plots=False)
        finally:
            bar.close()
        return self.ran

    def _take_slot(self) -> Any:
        """A trial for a free slot (a waiting resumption first: ``ask`` pops it), named after this worker; None
        when finished and running trials fill the budget; :data:`_WAIT` while one of those names no worker yet."""
        budget = self.plan.settings.trials
        with _holding(self.slots):
            trials = self.study.get_trials(deepcopy=False)
            if len(_live(trials)) >= budget:
                return _WAIT if _unclaimed(trials) else None
            trial = self.study.ask()
            trial.set_user_attr("worker", worker_id())
            trial.set_user_attr("heartbeat", time.time())
        before = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if len(_live(before)) >= budget:  # a worker that shares the storage but not the lock took it first
            self._close_surplus(trial)
            return None
        return trial

    def _close_surplus(self, trial: Any) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("surplus", True)
        self.study.tell(trial, state=TrialState.FAIL)

    def _run_trial(self, trial: Any, bar: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        self.study.sampler = _sampler(self.plan, trial.number)  # reproducible draws, whatever ran before
        started = time.time()
        config = sample(trial, self.plan.config, self.plan.dims, self.plan.sections)
        config["train"]["progress"] = False
        trial.set_user_attr("config", _plain(config))
        folder = self._folder(trial)
        trainer = self._trainer(config, folder)
        earlier = self._resume(trial, trainer, folder)
        if earlier is None:  # a checkpoint that cannot be read may have left the trainer half-loaded
            trainer, earlier = self._trainer(config, folder), 0.0
        trainer.on_validation = self._reporter(trial)
        state, note = TrialState.COMPLETE, ""
        try:
            result = trainer.fit_validation()
        except optuna.TrialPruned:
            state, note = TrialState.PRUNED, "pruned"
        except FloatingPointError as error:  # a diverging configuration is a finished, hopeless trial
            state, note = TrialState.PRUNED, f"diverged: {' '.join(str(error).split())[:120]}"
        except BaseException as error:  # interrupted or broken: the slot is freed for a later run
            trial.set_user_attr("interrupted", f"{type(error).__name__}: {error}"[:200])
            # a broken configuration is not run again; an interrupted one is (whatever the stop surfaced as),
            # enqueued before its slot is freed so that no other worker draws a new trial into that slot
            if isinstance(error, (KeyboardInterrupt, SystemExit)) or stop_requested():
                enqueue_resumption(self.study, self.study._storage.get_trial(trial._trial_id), stopped=True)
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        _drop_checkpoints(folder)  # a finished trial is never resumed; its curve stays
        best = trainer.best
        # a pruned or diverged trial stops inside an epoch that the history does not hold yet
        trial.set_user_attr("epochs_run", len(trainer.history) + (state != TrialState.COMPLETE))
        trial.set_user_attr("best_epoch", best["epoch"])
        trial.set_user_attr("seconds", round(time.time() - started + earlier, 2))
        if note:
            trial.set_user_attr("note", note)
        if state == TrialState.COMPLETE:
            self.study.tell(trial, result["valid"][self.plan.metric])
        else:
            self.study.tell(trial, state=state)
        self._line(trial.number, bar)

    def _folder(self, trial: Any) -> Path:
        """The trial's folder, made; a resumption takes over the interrupted trial's folder."""
        from dglmm.io import make_folder

        folder = trial_folder(self.plan.settings, trial.number)
        resumes = trial.user_attrs.get("resumes")
        if resumes is not None:
            earlier = trial_folder(self.plan.settings, int(resumes))
            if (earlier / "checkpoint.pt").is_file() and not folder.exists():
                os.replace(earlier, folder)
        else:  # a fresh trial never continues what an earlier study left under its number
            _drop_checkpoints(folder)
        make_folder(folder)
        return folder

    def _trainer(self, config: dict, folder: Path) -> Any:
        """A seeded model and its trainer, checkpointing every epoch into the trial's folder."""
        from dglmm.train.run import prepare_run

        trainer = prepare_run(self.plan.settings.model, self.dataset, config, run_dir=folder).trainer
        trainer.config = dataclasses.replace(trainer.config, checkpoint_every=1)
        return trainer

    def _resume(self, trial: Any, trainer: Any, folder: Path) -> float | None:
        """Continue a resumption from the interrupted trial's checkpoint and replay its reports to the pruner;
        returns the training seconds of the epochs it continues from (0 for a trial that is not a resumption),
        None when the checkpoint is missing or unreadable (the trial then runs from its first epoch)."""
        from dglmm.errors import CheckpointError

        resumes = trial.user_attrs.get("resumes")
        if resumes is None:
            return 0.0
        try:
            trainer.resume(folder / "checkpoint.pt")
        except CheckpointError as error:  # none (killed before its first epoch ended) or unreadable
            trial.set_user_attr("resumed", f"trial {resumes} run again from epoch 1: {error}"[:200])
            return None
        best = -float("inf")
        for record in trainer.history:
            if "valid" in record:
                best = max(best, record["valid"][self.plan.metric])
                trial.report(best, record["epoch"])
        trial.set_user_attr("resumed", f"resumes trial {resumes} after epoch {len(trainer.history)}")
        return float(sum(record["train_seconds"] for record in trainer.history))

    def _reporter(self, trial: Any):
        import optuna

        last_beat = [time.time()]

        def report(epoch: int, best: float) -> None:
            trial.report(best, epoch)
            if time.time() - last_beat[0] > 30:
                trial.set_user_attr("heartbeat", time.time())
                last_beat[0] = time.time()
            if self.plan.settings.pruner != "none" and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        return report

    def _line(self, number: int, bar: Any) -> None:
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)
        best = _best(self.study)
        value = "-" if frozen.value is None else f"{frozen.value:.4f}"
        params = "  ".join(f"{k}={_short(v)}" for k, v in frozen.params.items())
        line = (f"trial {number} {frozen.state.name.lower():8s} valid {self.plan.metric} {value}  "
                f"epochs {frozen.user_attrs.get('epochs_run')}  {frozen.user_attrs.get('seconds')} s  "
                f"best {'-' if best is None else f'{best.value:.4f} (trial {best.number})'}  {params}")
        bar.update(0)
        if self.progress:
            if bar.disable:
                print(f"[{_finished(self.study)}/{self.plan.settings.trials}] {line}", file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _best(study: Any) -> Any:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _plain(config: dict) -> dict:
    return {s: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for s, values in config.items()}


# -- outputs --------------------------------------------------------------------------------------------------
def trials_table(study: Any) -> list[dict]:
    """One row per trial: number, state, validation metric, epochs run, best epoch, seconds, parameters."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    rows = []
    for t in trials:
        if t.user_attrs.get("surplus") or t.state.name == "WAITING":  # waiting: a resumption not yet started
            continue
        state = t.state.name.lower()
        rows.append({"number": t.number, "state": state, "value": t.value,
                     "pruned": state == "pruned", "epochs_run": t.user_attrs.get("epochs_run"),
                     "best_epoch": t.user_attrs.get("best_epoch"), "seconds": t.user_attrs.get("seconds"),
                     **{k: t.params.get(k) for k in keys},
                     "note": "; ".join(t.user_attrs[k] for k in ("resumed", "note", "interrupted")
                                       if t.user_attrs.get(k))})
    return rows


def write_outputs(plan: Plan, study: Any, plots: bool = True) -> list[str]:
    """``trials.csv``, ``config.yaml`` (the best trial's configuration) and, with ``plots``, the PNGs; returns
    the plots that could not be drawn, with the reason."""
    import pandas as pd

    folder = plan.settings.folder
    rows = trials_table(study)
    if rows:
        frame = pd.DataFrame(rows)
        write_text(folder / "trials.csv", frame.to_csv(index=False))
    best = _best(study)
    if best is not None:
        header = (f"# dglmm tune: best of study {plan.settings.name} (trial {best.number}, valid {plan.metric} "
                  f"{best.value:.4f}); reproduce with:\n# dglmm train -c config.yaml --seeds 3\n")
        config = _without_inactive(best.user_attrs["config"], plan.sections)
        config = {"model_name": plan.settings.model, "dataset": str(plan.definition["dataset"]),
                  **{s: v for s, v in config.items() if v}}
        write_text(folder / "config.yaml", header + yaml.safe_dump(config, sort_keys=False))
    return plot_study(study, folder) if plots else []


def _without_inactive(config: dict, sections: dict[str, type]) -> dict:
    """``config`` without the options that have no effect in it (e.g. a packaged model layer's ``kg_*`` once a
    trial drew ``kg_loss=false``): ``dglmm train -c`` rejects an option set without effect."""
    from dglmm.config import effective_options

    _, inactive = effective_options(config, sections)
    return {s: {k: v for k, v in values.items() if f"{s}.{k}" not in inactive} for s, values in config.items()}


def plot_study(study: Any, folder: Path) -> list[str]:
    """``history.png`` and ``importances.png`` (Optuna's matplotlib plots); returns what could not be drawn."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    skipped = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in (("history.png", ovm.plot_optimization_history),
                           ("importances.png", ovm.plot_param_importances)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as error:  # e.g. importances need two finished trials
                skipped.append(f"{name}: {' '.join(str(error).split())[:120]}")
                continue
            figure = axes.figure
            figure.tight_layout()
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".png")  # one per process: workers
            os.close(fd)                                                                   # of a study draw at once
            figure.savefig(tmp, dpi=120)
            os.replace(tmp, folder / name)
            plt.close(figure)
    return skipped


# -- the best trial's seeds -------------------------------------------------------------------------------------
def run_seeds(plan: Plan, study: Any, dataset: Any) -> dict | None:
    """Re-run the best trial with ``seeds`` seeds (base seed + 0..seeds-1) into ``best-trial<N>/seed<i>``,
    resuming a seed that has a checkpoint and skipping one with ``results.json``; writes ``summary.json``
    with the test metrics as mean and std.  Returns None when another worker holds the claim."""
    from dglmm.train.run import aggregate, run_once

    best = _best(study)
    if best is None or plan.settings.seeds == 0:
        return None
    out = plan.settings.folder / f"best-trial{best.number}"
    if not _claim(out / "claim"):
        return None
    try:
        runs = []
        for index in range(plan.settings.seeds):
            run_dir = out / f"seed{index}"
            if (run_dir / "results.json").is_file():
                runs.append(json.loads((run_dir / "results.json").read_text()))
                continue
            config = json.loads(json.dumps(best.user_attrs["config"]))
            config["train"]["seed"] = plan.definition["seed"] + index
            config["train"]["progress"] = False
            result = run_once(plan.settings.model, dataset, config, run_dir,
                              resume=(run_dir / "checkpoint.pt").is_file())
            runs.append(result)
            print(f"best trial {best.number}, seed {config['train']['seed']}: test {plan.metric} "
                  f"{result['test'][plan.metric]:.4f}", file=sys.stderr, flush=True)
        summary = {"study": plan.settings.name, "model": plan.settings.model, "dataset": plan.definition["dataset"],
                   "trial": best.number, "params": best.params, "valid_trial": best.value,
                   "metric": plan.metric, "seeds": [plan.definition["seed"] + i for i in range(len(runs))],
                   "valid": aggregate(runs, "valid"), "test": aggregate(runs, "test"),
                   "best_epochs": [r["best_epoch"] for r in runs]}
        write_json(out / "summary.json", summary)
        return summary
    finally:
        (out / "claim").unlink(missing_ok=True)


def _claim(path: Path) -> bool:
    """Create ``path`` exclusively (holding this worker's id); take it over when its worker is dead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _alive(path.read_text().strip() if path.exists() else None) is False:
                path.unlink(missing_ok=True)
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(worker_id())
        return True
    return False


# -- the command -------------------------------------------------------------------------------------------------
def tune(settings: TuneSettings, dataset: Any, progress: bool = True) -> dict:
    """Plan, open and work on a study, then (when every trial is finished) run the best trial's seeds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = plan_study(settings, dataset.name)
    _check_folder(plan)
    storage = open_storage(settings)
    study = open_study(plan, storage)
    _record(plan)
    started = time.time()
    ran = Worker(plan, study, dataset, progress).run()
    seconds = time.time() - started
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    skipped = write_outputs(plan, study, plots=not running)
    summary = None if running else run_seeds(plan, study, dataset)
    return {"folder": str(settings.folder), "ran": ran, "seconds": round(seconds, 1), "skipped_plots": skipped,
            "finished": _finished(study), "running": len(running), "best": _best(study), "summary": summary,
            "metric": plan.metric}


def _check_folder(plan: Plan) -> None:
    """An existing study folder must hold this study (same model and dataset), else nothing is touched."""
    path = plan.settings.folder / "study.yaml"
    if path.is_file():
        recorded = (yaml.safe_load(path.read_text()) or {}).get("definition", {})
        for key in ("model", "dataset"):
            if recorded.get(key) != plan.definition[key]:
                raise InputError(f"study {plan.settings.name!r} ({plan.settings.folder}) belongs to {key} "
                                 f"{recorded.get(key)!r}, not {plan.definition[key]!r}; choose another --study")


def _record(plan: Plan) -> None:
    settings = dataclasses.asdict(plan.settings)
    write_text(plan.settings.folder / "study.yaml",
               yaml.safe_dump({"settings": settings, "definition": plan.definition}, sort_keys=False))


def load_settings(folder: Path) -> TuneSettings:
    """The settings recorded in a study folder (``dglmm tune --resume FOLDER``)."""
    path = Path(folder) / "study.yaml"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {folder} a dglmm tune study folder?)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        settings = TuneSettings(**data["settings"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a study record ({type(exc).__name__})") from None
    settings.out = str(Path(folder).parent)
    settings.study = Path(folder).name
    return settings


def format_result(result: dict) -> str:
    """The closing lines of ``dglmm tune``."""
    lines = [f"study folder: {result['folder']} ({result['finished']} trials finished, {result['ran']} run by "
             f"this worker in {result['seconds']:.0f} s)"]
    best = result["best"]
    if best is not None:
        params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        lines.append(f"best trial {best.number}: valid {result['metric']} {best.value:.4f} ({params})")
    lines += [f"not drawn: {text}" for text in result.get("skipped_plots", [])]
    if result["running"]:
        lines.append(f"{result['running']} trial(s) still running in other workers; the last one to finish "
                     "writes the plots and runs the seeds")
    summary = result["summary"]
    if summary:
        test = summary["test"]
        shown = [k for k in test if k.endswith("@20")] or list(test)[:4]
        lines.append(f"best trial, {len(summary['seeds'])} seeds, test: " + "  ".join(
            f"{k} {test[k]['mean']:.4f} ± {test[k]['std']:.4f}" for k in shown))
    return "\n".join(lines)


__all__ = ["TuneSettings", "format_result", "load_settings", "plan_study", "tune", "write_outputs"]
