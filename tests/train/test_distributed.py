"""Data-parallel training under ``torchrun --nproc_per_node=2`` (gloo, CPU) against the single-process run.

Equivalence: with the same global batch, per-epoch losses agree to a relative 1e-6 (measured: about 1e-8,
float32 reduction order of the two half-batch gradients), the validation/test metrics agree to 1e-9
(measured: identical), the best epoch is the same, and every rank ends with identical parameters and learned
graphs.  The batch size 501 makes every shard pair unequal (251/250 rows; last batch 17/16), which checks the
shard weighting.  KGAT, whose trajectory drifts from one plain process (docs/distributed.md), is checked
exactly against one process that sums the same shards' gradients.  Skipped with the reason when torchrun
cannot start two gloo processes here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.readers import load_dataset
from dglmm.train.distributed import shard_slice
from dglmm.train.run import resolve_model_config, run_once

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
LOSS_RTOL, METRIC_ATOL = 1e-6, 1e-9


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process references use one thread, like the torchrun workers (``OMP_NUM_THREADS=1`` in :func:`_env`):
    summation order then depends only on what is compared, not on the machine's thread count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def can_launch() -> None:
    """Skip (with the reason) when torchrun is missing or two gloo processes cannot rendezvous here."""
    if not TORCHRUN.exists():
        pytest.skip(f"torchrun not found beside {sys.executable}")
    probe = ("import torch.distributed as d; d.init_process_group('gloo'); import torch; t = torch.ones(1); "
             "d.all_reduce(t); assert t.item() == 2; d.barrier(); import os; os._exit(0)")  # as distributed.leave
    try:
        out = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "--no-python", sys.executable,
                              "-c", probe], env=_env(), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"torchrun cannot start: {exc}")
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["no output"]
        pytest.skip(f"torchrun cannot start two gloo processes: {lines[-1]}")


SETS = ["train.epochs=3", "train.batch_size=501", "train.checkpoint_every=1", "train.patience=10"]


def single_process(model: str, run_dir: Path, sets: list[str]) -> Path:
    dataset = load_dataset("synthetic")
    run_once(model, dataset, resolve_model_config(model, dataset.name, [], sets), run_dir)
    return run_dir


def read_run(run_dir: Path) -> tuple[list[dict], dict, dict]:
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((run_dir / "results.json").read_text())
    with np.load(run_dir / "per_user_test.npz", allow_pickle=False) as data:
        per_user = {k: data[k] for k in data.files}
    return history, results, per_user


def assert_equivalent(single: Path, parallel: Path) -> None:
    h1, r1, u1 = read_run(single)
    h2, r2, u2 = read_run(parallel)
    assert len(h1) == len(h2)
    for a, b in zip(h1, h2, strict=True):
        terms = [k for k in a if k not in ("epoch", "train_seconds", "valid")]
        assert terms and sorted(terms) == sorted(k for k in b if k not in ("epoch", "train_seconds", "valid"))
        for k in terms:
            assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL), (a["epoch"], k)
        for k, v in a["valid"].items():
            assert b["valid"][k] == pytest.approx(v, abs=METRIC_ATOL), (a["epoch"], k)
    assert r1["best_epoch"] == r2["best_epoch"]
    for k, v in r1["test"].items():
        assert r2["test"][k] == pytest.approx(v, abs=METRIC_ATOL), k
    assert set(u1) == set(u2)
    for k in u1:
        np.testing.assert_allclose(u2[k], u1[k], atol=METRIC_ATOL)


def test_shard_slices_partition_any_batch() -> None:
    for n in (1, 2, 7, 501, 1024):
        for world in (1, 2, 3, 8):
            parts = [shard_slice(n, r, world) for r in range(world)]
            assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
            assert parts[0].start == 0 and parts[-1].stop == n
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_lightgcn_torchrun_equals_single_process(can_launch, tmp_path: Path) -> None:
    single = single_process("lightgcn", tmp_path / "single", SETS)
    out = torchrun("-m", "dglmm", "train", "-m", "lightgcn", "-d", "synthetic", "--out", str(tmp_path / "dist"),
                   *[a for s in SETS for a in ("--set", s)], "--set", "train.progress=false")
    assert out.returncode == 0, out.stderr[-2000:]
    (parallel,) = (tmp_path / "dist").glob("lightgcn_synthetic_*/seed0")
    assert_equivalent(single, parallel)
    assert out.stdout.count("run folder:") == 2  # only rank 0 reports it (at the start and with the results)


def test_lattice_torchrun_equals_single_process_with_identical_graphs(can_launch, tmp_path: Path) -> None:
    sets = [*SETS, "train.epochs=2", "train.progress=false"]
    single = single_process("lattice", tmp_path / "single", sets)
    out = torchrun(str(ROOT / "tests" / "train" / "dist_worker.py"), "lattice", str(tmp_path / "dist"), *sets)
    assert out.returncode == 0, out.stderr[-2000:]
    assert_equivalent(single, tmp_path / "dist" / "run")
    report = json.loads((tmp_path / "dist" / "ranks.json").read_text())
    assert report["learned_graphs"], "LATTICE should carry its learned graph in the state"
    rank0, rank1 = report["ranks"]
    assert rank0 == rank1  # parameters and learned-graph edges/weights, entry by entry


def accumulated_reference(model: str, run_dir: Path, sets: list[str], world: int = 2) -> Path:
    """One process that does what N ranks do, without torch.distributed: per global batch, the loss of each
    shard weighted by ``n_r / n`` (a batch without BPR rows: ``1 / N`` each), all from the same RNG state,
    gradients summed, one step of the optimiser the trainer passes (KGAT's TransR phase has its own Adam).  An
    independent reference of :class:`DataParallelStep`."""
    import torch

    from dglmm.models.base import Batch
    from dglmm.train.run import prepare_run

    dataset = load_dataset("synthetic")
    trainer = prepare_run(model, dataset, resolve_model_config(model, dataset.name, [], sets), run_dir).trainer
    net, graph, opt = trainer.model, trainer.graph, trainer.optimizer

    def step(batch: Batch, epoch: int, sums: dict, counts: dict, optimizer=None) -> None:
        n, state, values = len(batch.users), torch.get_rng_state(), {}
        optimizer = optimizer or opt
        optimizer.zero_grad(set_to_none=True)
        for rank in range(world):
            torch.set_rng_state(state)
            part = shard_slice(n, rank, world) if n else slice(0, 0)
            weight = (part.stop - part.start) / n if n else 1.0 / world
            local = Batch(batch.users[part], batch.pos[part], batch.neg[part], batch.extras)
            terms = net.loss(net.training_forward(graph, local), local)
            (sum(terms.values()) * weight).backward()
            for k, v in terms.items():
                values[k] = values.get(k, 0.0) + v.item() * weight
        optimizer.step()
        for k, v in values.items():
            sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1

    trainer._step = step
    trainer.fit()
    return run_dir


def test_kgat_torchrun_equals_summed_half_batch_gradients(can_launch, tmp_path: Path) -> None:
    """KGAT (message dropout, TransR phase batches) drifts from one plain process by Adam-amplified summation
    order (docs/distributed.md); against the reference that sums the same shards' gradients it is exact."""
    sets = ["train.epochs=1", "train.batch_size=501", "train.progress=false"]
    out = torchrun(str(ROOT / "tests" / "train" / "dist_worker.py"), "kgat", str(tmp_path / "dist"), *sets)
    assert out.returncode == 0, out.stderr[-2000:]
    reference = accumulated_reference("kgat", tmp_path / "reference", sets)
    h1, r1, u1 = read_run(reference)
    h2, r2, u2 = read_run(tmp_path / "dist" / "run")
    assert {k for k in h1[0] if k not in ("epoch", "train_seconds", "valid")} >= {"bpr", "transr"}
    for a, b in zip(h1, h2, strict=True):
        for k in a:
            if k not in ("epoch", "train_seconds", "valid"):
                assert b[k] == pytest.approx(a[k], rel=1e-9), k
        assert b["valid"] == a["valid"]
    assert r1["test"] == r2["test"]
    for k in u1:
        np.testing.assert_array_equal(u2[k], u1[k])


def _worker_pid(torchrun_pid: int, rank: int) -> int | None:
    """The pid of the worker of ``rank`` among the children of the torchrun process (Linux /proc)."""
    for task in Path(f"/proc/{torchrun_pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the worker")
def test_killed_rank_stops_the_run_with_one_line_and_it_resumes(can_launch, tmp_path: Path) -> None:
    sets = ["train.epochs=5", "train.batch_size=256", "train.checkpoint_every=100", "train.patience=20",
            "train.progress=false"]
    out_dir = tmp_path / "dist"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dglmm", "train", "-m", "lightgcn",
           "-d", "synthetic", "--out", str(out_dir), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        run_dir = None
        while time.time() < deadline and proc.poll() is None:  # wait for 2 completed epochs
            found = list(out_dir.glob("lightgcn_synthetic_*/seed0/metrics.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 2:
                run_dir = found[0].parent
                break
            time.sleep(0.05)
        assert run_dir is not None, "the run did not reach epoch 2"
        victim = _worker_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("dglmm:")]
    assert len(ours) == 1, stderr[-3000:]
    assert "another process of the run failed" in ours[0] and f"--resume {run_dir}" in ours[0]
    assert "File \"" + str(ROOT / "dglmm") not in stderr  # no traceback from dglmm's processes
    assert not (run_dir / "results.json").exists()
    done = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert 2 <= done < 5

    resumed = torchrun("-m", "dglmm", "train", "-d", "synthetic", "-m", "lightgcn", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    single = single_process("lightgcn", tmp_path / "single", sets)
    assert_equivalent(single, run_dir)  # interrupted + resumed on 2 ranks == one uninterrupted process


def test_only_communication_failures_become_peer_failures() -> None:
    from dglmm.errors import PeerFailure
    from dglmm.train.distributed import collective

    def gone() -> None:
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:525] Read error: Connection reset by peer")

    def bug() -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)")

    with pytest.raises(PeerFailure, match="another process of the run failed"):
        collective(gone)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        collective(bug)
