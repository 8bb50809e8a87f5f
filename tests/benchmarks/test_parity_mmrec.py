"""benchmarks/parity_mmrec.py without MMRec: its edits, the split as each side reads it, the comparison.

The parts that need MMRec's code run when ``MMREC_DIR`` names a checkout of https://github.com/enoche/MMRec and
are skipped otherwise; the dglmm side runs when the model is registered.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.synthetic import make_synthetic
from dglmm.models import REGISTRY

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "parity_mmrec.py"
MMREC = Path(os.environ.get("MMREC_DIR", "/nonexistent"))
needs_mmrec = pytest.mark.skipif(not (MMREC / "src" / "models" / "mgcn.py").exists(),
                                 reason="MMREC_DIR does not name an MMRec checkout")


def _load():
    spec = importlib.util.spec_from_file_location("parity_mmrec", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pm = _load()


def write_fixture(folder: Path, seed: int = 0) -> Path:
    """A small TikTok-like folder in MMRec's layout, with the cases the filters handle: a user with validation
    and test interactions but none in training, and a user with training interactions only."""
    ds = make_synthetic(n_users=60, n_items=80, modality_dims={"image": 8, "audio": 6}, kg=False, seed=seed)
    rows = [(u, i, label) for label, part in enumerate((ds.train, ds.valid, ds.test)) for u, i in part]
    rows += [(ds.n_users, 3, 1), (ds.n_users, 5, 2), (ds.n_users, 7, 2), (ds.n_users + 1, 2, 0)]
    folder.mkdir(parents=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"] + [f"{u}\t{i}\t1\t0\t{x}" for u, i, x in rows]
    (folder / "tiktok.inter").write_text("\n".join(lines) + "\n")
    for name, feats in ds.modalities.items():
        np.save(folder / f"{name}_feat.npy", feats.astype(np.float16))
    return folder


def test_edits_apply_exactly_and_refuse_another_version(tmp_path):
    edit = pm.Edit("a/b.py", "x.cuda()", "x.to(d)", 2, "why")
    target = tmp_path / "a" / "b.py"
    target.parent.mkdir()
    target.write_text("y = x.cuda()\nz = x.cuda()\n")
    pm.apply_edits(tmp_path, (edit,))
    assert target.read_text() == "y = x.to(d)\nz = x.to(d)\n"
    with pytest.raises(SystemExit, match=r"b\.py: expected 2 occurrence"):  # already applied: 0 found
        pm.apply_edits(tmp_path, (edit,))
    assert all(e.why and e.old != e.new for e in pm.EDITS)


def test_both_readings_of_the_split_agree_with_hand_counts(tmp_path):
    folder = write_fixture(tmp_path / "tiktok")
    mmrec, dglmm = pm.split_stats_from_inter(folder / "tiktok.inter"), pm.split_stats_dglmm(folder)
    assert mmrec == dglmm
    ds = make_synthetic(n_users=60, n_items=80, modality_dims={"image": 8, "audio": 6}, kg=False, seed=0)
    trained = set(ds.train[:, 0])
    assert mmrec["n_users"] == ds.n_users + 2 and mmrec["train"] == len(ds.train) + 1
    assert mmrec["valid"] == sum(u in trained for u in ds.valid[:, 0])  # the untrained user is left out
    assert mmrec["test_users"] == len(set(ds.test[:, 0]) & trained)


def _run(side, model, seed, recall, ndcg, history=None):
    return {"side": side, "model": model, "seed": seed, "best_epoch": 3, "epochs_run": 5, "epoch_cap": 5,
            "stats": {"n_users": 1}, "test": {"recall@20": recall, "ndcg@20": ndcg}, "history": history or []}


def test_summary_means_relative_gaps_and_test_selection():
    hist = [{"epoch": e, "valid": {"recall@20": r / 4}, "test": {"recall@20": r, "ndcg@20": r / 2}}
            for e, r in enumerate((0.1, 0.3, 0.2), 1)]
    runs = [_run("mmrec", "mgcn", 1, 0.2, 0.1, hist), _run("mmrec", "mgcn", 2, 0.4, 0.1, hist),
            _run("dglmm", "mgcn", 1, 0.3, 0.1), _run("dglmm", "mgcn", 2, 0.33, 0.1)]
    table = pm.summarize(runs)["mgcn"]
    assert table["mmrec"]["recall@20"] == pytest.approx((0.3, 0.1))
    assert table["dglmm"]["recall@20"] == pytest.approx((0.315, 0.015))
    assert table["relative"]["recall@20"] == pytest.approx(0.315 / 0.3 - 1)
    assert table["relative"]["ndcg@20"] == pytest.approx(0.0)
    assert table["welch_p"]["recall@20"] == pytest.approx(0.905, abs=0.002)  # scipy: 0.3, 0.33 vs 0.2, 0.4
    assert table["dglmm"]["recall@20 per seed"] == [0.3, 0.33]
    assert table["mmrec"]["recall@20 (test-selected)"] == pytest.approx((0.3, 0.0))  # max over epochs
    assert "recall@20 (test-selected)" not in table["dglmm"]                         # never tested per epoch
    assert table["mmrec"]["valid_curve"] == pytest.approx({1: 0.025, 2: 0.075, 3: 0.05})


def test_validation_history_keeps_the_last_record_of_a_repeated_epoch(tmp_path):
    records = [{"epoch": 1, "valid": {"recall@20": 0.1}}, {"epoch": 2, "bpr": 0.5},
               {"epoch": 2, "valid": {"recall@20": 0.2}}, {"epoch": 2, "valid": {"recall@20": 0.3}}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert pm.validation_history(path) == [{"epoch": 1, "valid": {"recall@20": 0.1}},
                                           {"epoch": 2, "valid": {"recall@20": 0.3}}]


def test_report_reads_result_files_and_flags_gaps(tmp_path):
    runs = [_run("mmrec", "freedom", 1, 0.2, 0.1), _run("dglmm", "freedom", 1, 0.1, 0.1)]
    for r in runs:
        (tmp_path / f"{r['side']}-{r['model']}-s{r['seed']}.json").write_text(json.dumps(r))
    for side, epoch in (("mmrec", 2.0), ("dglmm", 1.0)):
        (tmp_path / f"speed-{side}-freedom.json").write_text(json.dumps(
            {"side": side, "model": "freedom", "epoch_s": epoch, "eval_s": 1.0, "peak_rss_mb": 100.0,
             "batches": 3}))
    text = pm.report(tmp_path)
    assert "-> identical" in text
    assert "Recall@20 -50.0%" in text and "(beyond 5%)" in text
    assert "dglmm / MMRec: epoch 0.50x, evaluation 1.00x, peak memory 1.00x" in text


@pytest.mark.parametrize("model", sorted(pm.MODELS))
def test_dglmm_side_trains_on_the_fixture_with_the_pinned_point(tmp_path, model):
    if model not in REGISTRY:
        pytest.skip(f"dglmm has no {model} model on this branch")
    data = write_fixture(tmp_path / "tiktok")
    result = pm.run_dglmm(tmp_path / "work", model, 999, 2, data=data)
    assert result["epochs_run"] == 2 and 0.0 <= result["test"]["recall@20"] <= 1.0
    assert result["stats"] == pm.split_stats_from_inter(data / "tiktok.inter")
    resolved = pm._dglmm_config(model, 999, 2, data)
    for key, value in pm.POINTS[model]["dglmm"].items():
        section, name = key.split(".")
        assert resolved[section][name] == value


@needs_mmrec
@pytest.mark.parametrize("model", sorted(pm.MODELS))
def test_mmrec_side_reads_the_same_split_and_trains(tmp_path, model):
    data = write_fixture(tmp_path / "fixture")
    work = tmp_path / "work"
    src = pm.prepare(MMREC, work, data=data)
    assert (src / ".parity-edits-applied").exists() and (work / "data" / "tiktok" / "tiktok.inter").exists()
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import parity_mmrec as pm; from pathlib import Path;"
            "r = pm.run_mmrec(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], 999, 2);"
            "print(json.dumps({k: r[k] for k in ('stats', 'epochs_run', 'test')}))")
    out = subprocess.run([sys.executable, "-c", code, str(SCRIPT.parent), str(src), str(work), model],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["stats"] == pm.split_stats_from_inter(data / "tiktok.inter")
    assert result["epochs_run"] == 2 and 0.0 <= result["test"]["recall@20"] <= 1.0
