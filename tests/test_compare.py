"""``dglmm compare``: paired tests on per-user test metrics against scipy.stats and exact hand references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dglmm.cli import main
from dglmm.compare import compare_runs, load_side
from dglmm.data.readers import load_dataset
from dglmm.errors import InputError
from dglmm.io import write_npz
from dglmm.train.run import resolve_model_config, run_once

METRICS = ["recall@20", "ndcg@20"]


def fake_run(folder: Path, users: np.ndarray, **metrics: np.ndarray) -> Path:
    arrays = {"user": users, "n_relevant": np.ones(len(users), dtype=np.int64)}
    arrays.update({k.replace("_at_", "@"): v for k, v in metrics.items()})
    write_npz(folder / "per_user_test.npz", arrays)
    return folder


def test_wilcoxon_matches_exact_reference_and_scipy(tmp_path: Path) -> None:
    users = np.arange(6)
    a = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.60])
    b = a + np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])  # 6 positive differences of distinct sizes
    rng = np.random.default_rng(0)
    na, nb = rng.random(6), rng.random(6)
    fake_run(tmp_path / "A", users, recall_at_20=a, ndcg_at_20=na)
    fake_run(tmp_path / "B", users, recall_at_20=b, ndcg_at_20=nb)
    (recall, ndcg) = compare_runs([tmp_path / "A", tmp_path / "B"], METRICS)[str(tmp_path / "B")]
    # exact null distribution: all 2^6 sign patterns equally likely; W+ = 21 is the largest: p = 2 / 64
    assert recall.p_wilcoxon == pytest.approx(2 / 64)
    assert ndcg.p_wilcoxon == pytest.approx(stats.wilcoxon(nb, na).pvalue)
    d = b - a
    half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
    assert (recall.ci_low, recall.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert recall.diff == pytest.approx(0.035) and recall.effect == pytest.approx(d.mean() / d.std(ddof=1))
    assert recall.p_ttest is None  # one seed per side


def test_ttest_over_seeds_matches_hand_formula(tmp_path: Path) -> None:
    users = np.arange(50)
    rng = np.random.default_rng(1)
    for side, shift in (("A", 0.0), ("B", 0.02)):
        for seed in range(3):
            fake_run(tmp_path / side / f"seed{seed}", users, recall_at_20=rng.random(50) + shift,
                     ndcg_at_20=rng.random(50))
    side_a, side_b = load_side(tmp_path / "A", METRICS), load_side(tmp_path / "B", METRICS)
    assert side_a.n_seeds == side_b.n_seeds == 3
    (recall, _) = compare_runs([tmp_path / "A", tmp_path / "B"], METRICS)[str(tmp_path / "B")]
    d = side_b.values["recall@20"].mean(1) - side_a.values["recall@20"].mean(1)  # seed means, paired by seed
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert recall.p_ttest == pytest.approx(2 * stats.t.sf(abs(t), 2))
    per_user_a, per_user_b = side_a.values["recall@20"].mean(0), side_b.values["recall@20"].mean(0)
    assert recall.p_wilcoxon == pytest.approx(stats.wilcoxon(per_user_b, per_user_a).pvalue)


def test_different_users_is_one_line_error(tmp_path: Path) -> None:
    fake_run(tmp_path / "A", np.arange(5), recall_at_20=np.ones(5), ndcg_at_20=np.ones(5))
    fake_run(tmp_path / "B", np.arange(1, 6), recall_at_20=np.ones(5), ndcg_at_20=np.ones(5))
    with pytest.raises(InputError, match="different users"):
        compare_runs([tmp_path / "A", tmp_path / "B"], METRICS)
    with pytest.raises(InputError, match="nowhere: not found"):
        compare_runs([tmp_path / "A", tmp_path / "nowhere"], METRICS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no per_user_test.npz"):
        compare_runs([tmp_path / "A", tmp_path / "empty"], METRICS)


def test_same_model_and_seed_gives_p_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = load_dataset("synthetic")
    sets = ["train.epochs=2", "train.batch_size=1024", "train.progress=false"]
    for name in ("A", "B"):
        run_once("lightgcn", dataset, resolve_model_config("lightgcn", dataset.name, [], sets), tmp_path / name)
    results = compare_runs([tmp_path / "A", tmp_path / "B"], METRICS)[str(tmp_path / "B")]
    assert [c.p_wilcoxon for c in results] == [1.0, 1.0]
    assert all(c.diff == 0 and not c.significant() for c in results)
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--metrics", *METRICS,
                 "--plot", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "p Wilcoxon" in out and out.count("  1  ") >= 2
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_recipe_cells_mark_significant_differences_to_the_baseline(tmp_path: Path) -> None:
    from dglmm.recipe import cell

    users = np.arange(40)
    rng = np.random.default_rng(2)
    base = rng.random(40)
    for name, values in (("base", base), ("same", base.copy()), ("better", base + 0.05 + 0.01 * rng.random(40))):
        fake_run(tmp_path / name / "seed0", users, recall_at_20=values, ndcg_at_20=values)

    def summary(name: str, values: np.ndarray) -> dict:
        return {"run_dir": str(tmp_path / name), "seeds": [0], "grid": [{"point": {}}], "selected": {},
                "test": {"recall@20": {"mean": float(values.mean()), "std": 0.0}}}

    baseline = summary("base", base)
    assert cell(baseline, "recall@20", baseline=baseline).endswith(f"{base.mean():.4f}")
    assert not cell(summary("same", base), "recall@20", baseline=baseline).endswith("*")
    assert cell(summary("better", base + 0.05), "recall@20", baseline=baseline).endswith("*")
    assert not cell({**summary("better", base), "run_dir": str(tmp_path / "gone")}, "recall@20",
                    baseline=baseline).endswith("*")  # no per-user results: no mark
