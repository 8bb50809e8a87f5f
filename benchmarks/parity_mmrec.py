"""MGCN and FREEDOM side by side with MMRec's own code on TikTok: accuracy, one epoch, one evaluation, memory.

    python benchmarks/parity_mmrec.py all --mmrec /path/to/MMRec --work /tmp/parity [--epochs 1000] [--seeds 3]
    python benchmarks/parity_mmrec.py report --work /tmp/parity

``--mmrec`` is a checkout of https://github.com/enoche/MMRec (never part of dglmm).  ``prepare`` copies its
``src/`` into ``<work>/mmrec_src`` and applies the compatibility edits listed in :data:`EDITS` to that copy
(each one is checked to match exactly, so a different MMRec version fails loudly rather than silently), writes
MMRec's dataset config for TikTok (MMRec ships none) and a data folder of symlinks (MMRec caches its kNN graphs
next to the data; the shared data stay untouched).  TikTok has image and audio features and no text: audio takes
MMRec's text slot (``text_feature_file: audio_feat.npy``), so FREEDOM's ``mm_image_weight`` weights image
against audio, on both sides.

Every run is one process with one thread (``OMP_NUM_THREADS=1``) writing ``<work>/<side>-<model>-s<seed>.json``
atomically; ``all`` skips runs whose file exists, so an interrupted ``all`` resumes where it stopped.  Both sides
use the same hyper-parameters (:data:`POINTS`: one point of MMRec's grid, MMRec's config for the rest) and the same
selection rule: early stopping on validation Recall@20 with MMRec's patience, the test metrics of the
best-validation epoch.  MMRec additionally picks the grid point with the best TEST Recall@20
(``utils/quick_start.py``); with one grid point that rule selects nothing, and ``report`` prints the per-run test
maximum over epochs beside it to show what selection on test would add.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DATA = Path(os.environ.get("DGLMM_DATA", HERE.parents[2] / "shared" / "data")) / "tiktok"
MODELS = {"mgcn": "MGCN", "freedom": "FREEDOM"}  # dglmm name -> MMRec name
SEEDS = (999, 1000, 1001)  # MMRec's default seed (overall.yaml) and the two after it


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly ``count`` times) by ``new`` in MMRec's ``src/<path>``."""

    path: str
    old: str
    new: str
    count: int
    why: str


#: The minimal edits that make MMRec (written for python 3.7, torch 1.11, numpy 1.21, scipy 1.7, a GPU) run on
#: this CPU with python 3.11, torch 2.2, numpy 1.26, scipy 1.17.  Nothing else in MMRec is changed.
EDITS = (
    Edit("utils/dataset.py",
         "from utils.data_utils import (ImageResize, ImagePad, image_to_tensor, load_decompress_img_from_lmdb_value)\n"
         "import lmdb\n", "", 1,
         "imports only used by end-to-end raw-image loading; they need torchvision and lmdb, not installed"),
    Edit("utils/utils.py",
         "    from torch_scatter import scatter_add\n    row, col = edge_index[0], edge_index[1]\n"
         "    deg = scatter_add(edge_weight, row, dim=0, dim_size=num_nodes)\n",
         "    row, col = edge_index[0], edge_index[1]\n"
         "    deg = torch.zeros(num_nodes, dtype=edge_weight.dtype).index_add_(0, row, edge_weight)\n", 1,
         "MGCN's kNN degrees come from torch_scatter (not installed); index_add_ sums the same way"),
    Edit("models/mgcn.py", ".cuda()", ".to(self.device)", 2,
         "MGCN moves its kNN graphs with .cuda(); no GPU here"),
    Edit("models/freedom.py", "A._update(data_dict)", "A._dict.update(data_dict)", 1,
         "scipy >= 1.12 removed dok_matrix._update; _dict is the same mapping"),
    Edit("utils/metrics.py", "np.float)", "np.float64)", 4,
         "numpy >= 1.24 removed the np.float alias (it meant float64)"),
)

#: MMRec's dataset config for TikTok (MMRec ships configs for Amazon data only); the fields of its baby.yaml.
TIKTOK_YAML = """\
USER_ID_FIELD: userID
ITEM_ID_FIELD: itemID
TIME_FIELD: timestamp
filter_out_cod_start_users: True
inter_file_name: 'tiktok.inter'
vision_feature_file: 'image_feat.npy'
text_feature_file: 'audio_feat.npy'
field_separator: "\\t"
"""

#: One point of MMRec's grid per model (the rest is MMRec's config as shipped), and the same values as dglmm
#: options.  MGCN: cl_loss in {0.001, 0.01, 0.1}; FREEDOM: dropout in {0.8, 0.9} x reg_weight in
#: {0, 1e-5, 1e-4, 1e-3}.  Neither paper reports TikTok, so there is no documented best point: MGCN takes the
#: middle of its grid, FREEDOM its first dropout and the first non-zero reg_weight (0 would switch its modality
#: BPR term off, leaving the feature projections untrained on both sides).
POINTS = {
    "mgcn": {"mmrec": {"cl_loss": 0.01},
             # MGCN.yaml: reg_weight 1e-4 (L2 on the batch's final embeddings), n_ui_layers 2, n_layers 1, knn_k 10
             "dglmm": {"model.cl_weight": 0.01, "model.reg_weight": 1e-4, "model.n_layers": 2,
                       "model.item_layers": 1, "model.knn_k": 10}},
    "freedom": {"mmrec": {"dropout": 0.8, "reg_weight": 1e-4},
                # FREEDOM.yaml: its reg_weight weights the modality BPR; no L2 on embeddings; mm_image_weight 0.1
                "dglmm": {"model.prune_ratio": 0.8, "model.modality_bpr_weight": 1e-4, "model.reg_weight": 0.0,
                          "model.image_weight": 0.1, "model.ui_layers": 2, "model.item_layers": 1,
                          "graph.knn_k": 10}},
}

#: dglmm settings that make its protocol MMRec's: MMRec stops when more than ``stopping_step`` (20) evaluations
#: passed without improvement (dglmm: after ``patience``), draws negatives among items seen in training
#: (``TrainDataLoader.all_items``), trains with batch 2048 and lr 1e-3, masks training items only.
DGLMM_PROTOCOL = {"train.patience": 21, "train.negative_pool": "train_items", "train.batch_size": 2048,
                  "train.lr": 1e-3, "train.mask_valid_in_test": False, "train.progress": False}


# -- preparation -------------------------------------------------------------------------------------------
def apply_edits(src: Path, edits: tuple[Edit, ...] = EDITS) -> None:
    """Apply ``edits`` to the copy ``src``; SystemExit naming the file when an edit does not match."""
    for edit in edits:
        path = src / edit.path
        text = path.read_text()
        found = text.count(edit.old)
        if found != edit.count:
            raise SystemExit(f"parity_mmrec: error: {path}: expected {edit.count} occurrence(s) of {edit.old!r}, "
                             f"found {found} (a different MMRec version?)")
        path.write_text(text.replace(edit.old, edit.new))


def link_data(data: Path, target: Path) -> None:
    """``target/tiktok`` with symlinks to the interaction file and the features (MMRec writes caches there)."""
    folder = target / "tiktok"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tiktok.inter", "image_feat.npy", "audio_feat.npy"):
        link = folder / name
        if not link.exists():
            link.symlink_to((data / name).resolve())


def prepare(mmrec: Path, work: Path, data: Path = DATA) -> Path:
    """The patched scratch copy ``<work>/mmrec_src`` (made once) and the data links; returns the copy's path."""
    src = work / "mmrec_src"
    if not (src / ".parity-edits-applied").exists():
        if not (mmrec / "src" / "models" / "mgcn.py").exists():
            raise SystemExit(f"parity_mmrec: error: {mmrec}: not an MMRec checkout (no src/models/mgcn.py)")
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(mmrec / "src", src)
        apply_edits(src)
        (src / "configs" / "dataset" / "tiktok.yaml").write_text(TIKTOK_YAML)
        (src / ".parity-edits-applied").write_text("\n".join(f"{e.path}: {e.why}" for e in EDITS) + "\n")
    link_data(data, work / "data")
    return src


# -- the split, read by each side ----------------------------------------------------------------------------
def split_stats_from_inter(path: Path) -> dict:
    """Users, items and split sizes as MMRec's RecDataset reads ``<name>.inter`` (ids 0..max, x_label 0/1/2,
    validation/test users without training interactions dropped), and the evaluated users of each split."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", usecols=["userID", "itemID", "x_label"])
    train = df[df.x_label == 0]
    known = set(train.userID)
    out = {"n_users": int(df.userID.max()) + 1, "n_items": int(df.itemID.max()) + 1, "train": len(train)}
    for label, name in ((1, "valid"), (2, "test")):
        part = df[(df.x_label == label) & df.userID.isin(known)]
        out[name] = len(part)
        out[f"{name}_users"] = int(part.userID.nunique())
    return out


def split_stats_dglmm(data: Path) -> dict:
    """The same figures from dglmm's reader (users evaluated: ground truth in the split and training data)."""
    from dglmm.data.readers import load_dataset

    ds = load_dataset(data)
    trained = np.unique(ds.train[:, 0])
    out = {"n_users": ds.n_users, "n_items": ds.n_items, "train": len(ds.train)}
    for name in ("valid", "test"):
        part = getattr(ds, name)
        part = part[np.isin(part[:, 0], trained)]
        out[name] = len(part)
        out[f"{name}_users"] = int(len(np.unique(part[:, 0])))
    return out


# -- one run of each side (each in its own process) -------------------------------------------------------------
def _mmrec_objects(src: Path, work: Path, model: str, seed: int, epochs: int):
    """MMRec's config, loaders, model and trainer for one point and seed, built as ``utils/quick_start.py``."""
    os.chdir(src)
    sys.path.insert(0, str(src))
    from utils.configurator import Config
    from utils.dataloader import EvalDataLoader, TrainDataLoader
    from utils.dataset import RecDataset
    from utils.logger import init_logger
    from utils.utils import get_model, get_trainer, init_seed

    point = {k: [v] for k, v in POINTS[model]["mmrec"].items()}
    config = Config(MODELS[model], "tiktok", {"gpu_id": 0, "use_gpu": False, "data_path": str(work / "data") + "/",
                                            "seed": [seed], "epochs": epochs, "save_recommended_topk": False,
                                            **point})
    init_logger(config)  # MMRec's log file under <work>/mmrec_src/log/
    dataset = RecDataset(config)
    train, valid, test = dataset.split()
    for part in (dataset, train, valid, test):
        str(part)  # quick_start logs each; __str__ sets the inter_num the loaders read
    train_data = TrainDataLoader(config, train, batch_size=config["train_batch_size"], shuffle=True)
    valid_data = EvalDataLoader(config, valid, additional_dataset=train, batch_size=config["eval_batch_size"])
    test_data = EvalDataLoader(config, test, additional_dataset=train, batch_size=config["eval_batch_size"])
    for key in config["hyper_parameters"]:  # one grid point: every list has one value
        config[key] = config[key][0] if isinstance(config[key], list) else config[key]
    init_seed(config["seed"])
    train_data.pretrain_setup()
    net = get_model(config["model"])(config, train_data).to(config["device"])
    trainer = get_trainer()(config, net, False)
    stats = {"n_users": dataset.get_user_num(), "n_items": dataset.get_item_num(), "train": len(train),
             "valid": len(valid), "test": len(test), "valid_users": len(valid_data.eval_u),
             "test_users": len(test_data.eval_u)}
    return config, trainer, (train_data, valid_data, test_data), stats


def run_mmrec(src: Path, work: Path, model: str, seed: int, epochs: int) -> dict:
    """One MMRec run (its Trainer.fit, unchanged) recording validation and test of every epoch."""
    tic = time.time()
    config, trainer, (train_data, valid_data, test_data), stats = _mmrec_objects(src, work, model, seed, epochs)
    history: list[dict] = []
    evaluate = trainer._valid_epoch

    def recording(data):  # fit() evaluates valid then test after every epoch
        score, result = evaluate(data)
        if data is valid_data:
            history.append({"epoch": len(history) + 1, "valid": result})
        else:
            history[-1]["test"] = result
        return score, result

    trainer._valid_epoch = recording
    _, best_valid, test_at_best = trainer.fit(train_data, valid_data=valid_data, test_data=test_data, saved=False)
    best_epoch = next((h["epoch"] for h in history if h["valid"] is best_valid), 0)
    return {"side": "mmrec", "model": model, "seed": seed, "point": POINTS[model]["mmrec"], "stats": stats,
            "best_epoch": best_epoch, "epochs_run": len(history), "valid": best_valid, "test": test_at_best,
            "history": history, "seconds": round(time.time() - tic, 1)}


def dglmm_overrides(model: str, seed: int, epochs: int) -> dict:
    """dglmm's ``--set`` values of one run: MMRec's protocol, the model's point, the seed and the epoch cap."""
    return {**DGLMM_PROTOCOL, **POINTS[model]["dglmm"], "train.seed": seed, "train.epochs": epochs}


def _dglmm_config(model: str, seed: int, epochs: int, data: Path = DATA) -> dict:
    """The config ``dglmm train -m <model> -d <data> --set ...`` resolves (defaults, then the overrides)."""
    from dglmm.train.run import resolve_model_config

    sets = [f"{key}={value}" for key, value in dglmm_overrides(model, seed, epochs).items()]
    return resolve_model_config(model, data.name, [], sets)


def run_dglmm(work: Path, model: str, seed: int, epochs: int, data: Path = DATA) -> dict:
    """One dglmm run (resumable from its checkpoint in ``<work>/dglmm-<model>-s<seed>/``)."""
    from dglmm.data.readers import load_dataset
    from dglmm.train.run import run_once

    tic, commit = time.time(), _commit(HERE.parents[1])  # the code the run starts with
    run_dir = work / f"dglmm-{model}-s{seed}"
    results = run_once(model, load_dataset(data), _dglmm_config(model, seed, epochs, data), run_dir, resume=True)
    return {"side": "dglmm", "model": model, "seed": seed, "point": dglmm_overrides(model, seed, epochs),
            "stats": split_stats_dglmm(data), "best_epoch": results["best_epoch"],
            "epochs_run": results["epochs_run"], "valid": results["valid"], "test": results["test"],
            "history": validation_history(run_dir / "metrics.jsonl"), "seconds": round(time.time() - tic, 1),
            "dglmm_commit": commit}


def _commit(repo: Path) -> str | None:
    """The checked-out commit of ``repo`` (None outside a git checkout)."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or None


def validation_history(path: Path) -> list[dict]:
    """``[{"epoch", "valid"}]`` from a dglmm run's ``metrics.jsonl`` (a resumed run may repeat an epoch: the
    last record counts)."""
    records = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "valid" in record:
            records[record["epoch"]] = {"epoch": record["epoch"], "valid": record["valid"]}
    return [records[e] for e in sorted(records)]


# -- one epoch, one evaluation, peak memory (each side in its own process) ----------------------------------
def _timed(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed_mmrec(src: Path, work: Path, model: str) -> dict:
    """MMRec: a warm-up epoch, then one timed epoch (its pre_epoch_processing, e.g. FREEDOM's pruning, included)
    and one timed full evaluation of the test split (after a warm-up evaluation)."""
    _, trainer, (train_data, _, test_data), _ = _mmrec_objects(src, work, model, SEEDS[0], 2)

    def epoch():
        trainer.model.pre_epoch_processing()
        trainer._train_epoch(train_data, 0)

    epoch()
    seconds = _timed(epoch)
    trainer.evaluate(test_data)
    return {"epoch_s": seconds, "eval_s": _timed(lambda: trainer.evaluate(test_data)), "batches": len(train_data)}


def speed_dglmm(model: str, data: Path = DATA) -> dict:
    """dglmm: the same measurements with its Trainer (one epoch = ``train_epoch``, evaluation = ``evaluate``)."""
    from dglmm.data.readers import load_dataset
    from dglmm.train.run import prepare_run

    trainer = prepare_run(model, load_dataset(data), _dglmm_config(model, SEEDS[0], 2, data)).trainer
    trainer.train_epoch(0)
    seconds = _timed(lambda: trainer.train_epoch(1))
    trainer.evaluate("test")
    return {"epoch_s": seconds, "eval_s": _timed(lambda: trainer.evaluate("test")), "batches": len(trainer.sampler)}


# -- the comparison ---------------------------------------------------------------------------------------------
METRICS = ("recall@20", "ndcg@20")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (as ``dglmm train --seeds``)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def test_max(run: dict, metric: str) -> float | None:
    """The best test value over the run's epochs: what selecting on test would report (MMRec records test every
    epoch; dglmm never computes test before selection, so its runs have no such figure)."""
    tests = [h["test"][metric] for h in run.get("history", []) if "test" in h]
    return max(tests) if tests else None


def summarize(runs: list[dict]) -> dict:
    """Per (model, side): seeds, epochs, and mean/std of each metric at the best-validation epoch, plus MMRec's
    test maximum over epochs; per model: the relative difference dglmm / MMRec - 1 of each mean."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["side"]), []).append(run)
    table: dict = {}
    for (model, side), members in sorted(groups.items()):
        members.sort(key=lambda r: r["seed"])
        row = {"seeds": sorted(r["seed"] for r in members), "best_epochs": [r["best_epoch"] for r in members],
               "epochs_run": [r["epochs_run"] for r in members], "epoch_cap": members[0].get("epoch_cap")}
        for metric in METRICS:
            row[f"{metric} per seed"] = [r["test"][metric] for r in members]
            row[metric] = mean_std(row[f"{metric} per seed"])
            maxima = [test_max(r, metric) for r in members]
            if all(m is not None for m in maxima):
                row[f"{metric} (test-selected)"] = mean_std(maxima)
        table.setdefault(model, {})[side] = row
        curves = [{h["epoch"]: h["valid"]["recall@20"] for h in r.get("history", [])} for r in members]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        row["valid_curve"] = {e: float(np.mean([c[e] for c in curves])) for e in common}
    for sides in table.values():
        if {"mmrec", "dglmm"} <= sides.keys():
            sides["relative"] = {m: sides["dglmm"][m][0] / sides["mmrec"][m][0] - 1 for m in METRICS}
            sides["welch_p"] = {m: welch_p(sides["dglmm"][f"{m} per seed"], sides["mmrec"][f"{m} per seed"])
                                for m in METRICS}
    return table


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test between two sides' per-seed values (None below 2 seeds a side or
    without spread on either side)."""
    from scipy.stats import ttest_ind

    if min(len(a), len(b)) < 2 or np.std(a) == np.std(b) == 0:  # no spread: the test is undefined
        return None
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def split_agreement(runs: list[dict]) -> dict[str, dict]:
    """The split as each side read it (users, items, split sizes, evaluated users); equal when they agree."""
    return {side: next((r["stats"] for r in runs if r["side"] == side), None) for side in ("mmrec", "dglmm")}


def curve_lines(model: str, sides: dict, every: int = 5) -> list[str]:
    """Mean validation Recall@20 over seeds at every ``every``-th epoch both sides ran: the two trainings side
    by side, whatever epoch each selection rule then picks."""
    curves = [sides[s]["valid_curve"] for s in ("mmrec", "dglmm") if s in sides]
    epochs = [e for e in sorted(set.intersection(*(set(c) for c in curves))) if e % every == 0 or e == 1]
    if not epochs:
        return []
    lines = [f"{model:8s} valid R@20 at epoch " + "  ".join(f"{e:>6d}" for e in epochs)]
    for side in ("mmrec", "dglmm"):
        if side in sides:
            lines.append(f"{'':8s} {side:18s} " + "  ".join(f"{sides[side]['valid_curve'][e]:.4f}" for e in epochs))
    return lines


def load_results(work: Path, prefix: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob(f"{prefix}-*.json"))]


def report(work: Path) -> str:
    """The parity table, the split check and the speed/memory ratios, as text."""
    runs = load_results(work, "mmrec") + load_results(work, "dglmm")
    lines = []
    split = split_agreement(runs)
    if split["mmrec"] and split["dglmm"]:
        same = "identical" if split["mmrec"] == split["dglmm"] else "DIFFERENT"
        lines += [f"split as read by MMRec: {split['mmrec']}", f"split as read by dglmm: {split['dglmm']}",
                  f"-> {same}", ""]
    lines.append("model    side   seeds  epochs run (best)          Recall@20        NDCG@20          "
                 "test-selected R@20 / N@20")
    for model, sides in summarize(runs).items():
        for side in ("mmrec", "dglmm"):
            row = sides.get(side)
            if row is None:
                continue
            cells = "  ".join(f"{m:.4f} ± {s:.4f}" for m, s in (row[k] for k in METRICS))
            chosen = [row[k] for k in (f"{m} (test-selected)" for m in METRICS) if k in row]
            extra = "  ".join(f"{m:.4f} ± {s:.4f}" for m, s in chosen) or "-"
            epochs = ", ".join(f"{n} ({b})" for n, b in zip(row["epochs_run"], row["best_epochs"], strict=True))
            lines.append(f"{model:8s} {side:6s} {len(row['seeds']):5d}  {epochs:26s} {cells}  {extra}")
        if "relative" in sides:
            rel = sides["relative"]
            flag = "  (beyond 5%)" if any(abs(v) > 0.05 for v in rel.values()) else ""
            p = {m: "" if v is None else f" (Welch p {v:.2f})" for m, v in sides["welch_p"].items()}
            lines.append(f"{model:8s} dglmm/MMRec - 1: Recall@20 {rel['recall@20']:+.1%}{p['recall@20']}, "
                         f"NDCG@20 {rel['ndcg@20']:+.1%}{p['ndcg@20']}{flag}")
            for side in ("mmrec", "dglmm"):
                seeds = "  ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(
                    *(sides[side][f"{m} per seed"] for m in METRICS), strict=True))
                lines.append(f"{'':8s} {side} per seed R@20 / N@20: {seeds}")
        lines += curve_lines(model, sides)
    speeds = {(s["model"], s["side"]): s for s in load_results(work, "speed")}
    if speeds:
        lines += ["", "one thread each: one training epoch, one full evaluation (test), peak RSS of the process"]
        for model in MODELS:
            pair = speeds.get((model, "mmrec")), speeds.get((model, "dglmm"))
            for s in filter(None, pair):
                lines.append(f"{model:8s} {s['side']:6s} epoch {s['epoch_s']:6.2f} s ({s['batches']} batches)  "
                             f"evaluation {s['eval_s']:5.2f} s  peak {s['peak_rss_mb']:7.1f} MB")
            if all(pair):
                lines.append(f"{model:8s} dglmm / MMRec: epoch {pair[1]['epoch_s'] / pair[0]['epoch_s']:.2f}x, "
                             f"evaluation {pair[1]['eval_s'] / pair[0]['eval_s']:.2f}x, "
                             f"peak memory {pair[1]['peak_rss_mb'] / pair[0]['peak_rss_mb']:.2f}x")
    return "\n".join(lines)


# -- driving the runs -----------------------------------------------------------------------------------------
def result_path(work: Path, side: str, model: str, seed: int) -> Path:
    return work / f"{side}-{model}-s{seed}.json"


def _child_env() -> dict:
    """One thread, and dglmm importable from this checkout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parents[1]), env.get("PYTHONPATH")]))
    return env


def spawn(args: list[str], log: Path) -> None:
    """Run this script with ``args`` in a child process (one thread), its output appended to ``log``."""
    with open(log, "a") as fh:
        done = subprocess.run([sys.executable, str(HERE), *args], env=_child_env(), stdout=fh,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"parity_mmrec: error: {' '.join(args)} failed (exit {done.returncode}); see {log}")


def run_all(args: argparse.Namespace) -> None:
    """Every missing run of the chosen sides and models, one at a time, each in its own process."""
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if "mmrec" in args.sides:
        prepare(args.mmrec, work)
    for seed in SEEDS[:args.seeds]:  # seed by seed: an interrupted run leaves whole seeds of every model
        for model, side in ((m, s) for m in args.models for s in args.sides):
            if result_path(work, side, model, seed).exists():
                continue
            print(f"{side} {model} seed {seed} ...", flush=True)
            spawn(["run", "--side", side, "--model", model, "--seed", str(seed), "--epochs", str(args.epochs),
                   "--work", str(work), *(["--mmrec", str(args.mmrec)] if args.mmrec else [])], work / "runs.log")
    if args.speed:
        for model in args.models:
            for side in args.sides:
                if not speed_path(work, side, model).exists():
                    print(f"speed {side} {model} ...", flush=True)
                    spawn(["speed", "--side", side, "--model", model, "--work", str(work),
                           *(["--mmrec", str(args.mmrec)] if args.mmrec else [])], work / "runs.log")


def speed_path(work: Path, side: str, model: str) -> Path:
    return work / f"speed-{side}-{model}.json"


def run_speed(args: argparse.Namespace) -> None:
    """One side's epoch, evaluation and peak memory for one model, in this process."""
    import torch

    from dglmm.io import write_json

    torch.set_num_threads(1)
    work = args.work.resolve()
    if args.side == "mmrec":
        result = speed_mmrec(prepare(args.mmrec, work), work, args.model)
    else:
        result = speed_dglmm(args.model)
    result.update(side=args.side, model=args.model, peak_rss_mb=round(peak_rss_mb(), 1), threads=1)
    write_json(speed_path(work, args.side, args.model), result)


def run_one(args: argparse.Namespace) -> None:
    """One run in this process; writes its result file atomically."""
    import torch

    from dglmm.io import write_json

    torch.set_num_threads(1)
    work = args.work.resolve()
    if args.side == "mmrec":
        result = run_mmrec(prepare(args.mmrec, work), work, args.model, args.seed, args.epochs)
    else:
        result = run_dglmm(work, args.model, args.seed, args.epochs)
    result["epoch_cap"] = args.epochs
    write_json(result_path(work, args.side, args.model, args.seed), result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--work", type=Path, required=True, help="folder of the scratch copy, logs and results")
    common.add_argument("--mmrec", type=Path, help="an MMRec checkout (needed for MMRec's side)")
    common.add_argument("--epochs", type=int, default=1000, help="epoch cap, the same on both sides")
    p_all = sub.add_parser("all", parents=[common], help="run every missing run, one process at a time")
    p_all.add_argument("--sides", nargs="+", default=["mmrec", "dglmm"], choices=["mmrec", "dglmm"])
    p_all.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p_all.add_argument("--seeds", type=int, default=3, choices=[1, 2, 3])
    p_all.add_argument("--speed", action="store_true", help="also time one epoch and one evaluation per side")
    p_one = sub.add_parser("run", parents=[common], help="one run in this process")
    p_one.add_argument("--seed", type=int, required=True)
    p_speed = sub.add_parser("speed", parents=[common], help="one side's timing and peak memory, in this process")
    for p in (p_one, p_speed):
        p.add_argument("--side", required=True, choices=["mmrec", "dglmm"])
        p.add_argument("--model", required=True, choices=list(MODELS))
    p_report = sub.add_parser("report", help="print the tables from the result files")
    p_report.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "report":
        print(report(args.work))
        return
    if getattr(args, "sides", None) and "mmrec" in args.sides and args.mmrec is None \
            or getattr(args, "side", None) == "mmrec" and args.mmrec is None:
        parser.error("--mmrec is needed for MMRec's side")
    {"all": run_all, "run": run_one, "speed": run_speed}[args.command](args)


if __name__ == "__main__":
    main()
