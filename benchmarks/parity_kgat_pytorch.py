"""dglmm's KGAT and MF against the PyTorch port of KGAT (LunaBlack/KGAT-pytorch) on the same split and settings.

    OMP_NUM_THREADS=1 python benchmarks/parity_kgat_pytorch.py run --port /path/to/KGAT-pytorch \\
        --out /work/runs/kgatport/parity [-d book-crossing] [--epochs 10] [--eval-every 2] [--seeds 3]
    python benchmarks/parity_kgat_pytorch.py table --out /work/runs/kgatport/parity

``--port`` is a checkout of the port kept outside this repository (never vendored).  ``run`` copies its Python
files into ``OUT/port`` and applies the compatibility edits of :data:`PORT_EDITS` there (each one says why; none
touches what is computed), writes the data in the port's layout (``OUT/data``), then trains, per seed: the
port's BPRMF (``main_bprmf.py``) and KGAT (``main_kgat.py``) and dglmm's ``mf`` and ``kgat``, one process each,
one after the other.  Every finished run leaves ``OUT/<side>_<model>_seed<k>/result.json`` and is skipped when
the command is run again (resumable).  ``table`` prints the parity table from those files.

Same split: dglmm reads the data (validation carved from ``train.txt``), and the port gets exactly that split:
``data/select/<name>`` has ``train.txt`` = dglmm's train and ``test.txt`` = dglmm's validation, so the port's
own early stopping and best-epoch choice (it "tests" every ``evaluate_every`` epochs and keeps the best
Recall@20) select on validation; the kept checkpoint is then evaluated by the port's own ``evaluate`` on
``data/test/<name>`` (the same train, ``test.txt`` = dglmm's test).  dglmm validates every ``--eval-every``
epochs with patience ``--stopping-steps`` (the port's ``stopping_steps``) and tests its best-validation state.
Both sides: the same selection rule (validation Recall@20), training items masked, validation items not.

Shared settings (both codes have them): embedding 64, KGAT layers [64, 32, 16], relation dim 64, message
dropout 0.1, bi-interaction aggregator, random-walk Laplacian (dglmm's ``sum_r 1/|N_r(h)|``) with attention
recomputed after every epoch (``attention=epoch``), CF batch 1024, TransR batch 2048 with
``n_triples // 2048 + 1`` batches per epoch, L2 1e-5 (CF) and 1e-5 (TransR), ``--lr`` (both Adam, two
optimisers for KGAT), ``--epochs``, no pre-training (the port's ``--use_pretrain 0``).  What differs is the
implementations' own: listed in docs/parity-kgat.md.  Seconds per epoch: the training phases of each epoch
(with the attention update, without evaluation), from the port's log and dglmm's ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dglmm.data.dataset import Dataset
from dglmm.io import write_json, write_text

_CUDA = 'device = torch.device("cuda" if torch.cuda.is_available() else "cpu")'
#: (file, old text, new text, occurrences, why): the only changes made to the port's copy; each must match
#: exactly ``occurrences`` times (else the checkout is not the version this script was written for)
PORT_EDITS: list[tuple[str, str, str, int, str]] = [
    ("data_loader/loader_base.py", "exist_users = user_dict.keys()", "exist_users = list(user_dict.keys())", 1,
     "Python >= 3.11: random.sample() no longer accepts a dict view (TypeError); the same users, same order"),
    ("data_loader/loader_base.py", "exist_heads = kg_dict.keys()", "exist_heads = list(kg_dict.keys())", 1,
     "the same for the TransR heads"),
    ("main_kgat.py", _CUDA, 'device = torch.device("cpu")', 2, "CPU device, explicit (train and predict)"),
    ("main_bprmf.py", _CUDA, 'device = torch.device("cpu")', 2, "CPU device, explicit (train and predict)"),
    ("utils/metrics.py", "torch.sort(cf_scores.cuda(), descending=True)", "torch.sort(cf_scores, descending=True)",
     1, "sort on CPU directly instead of trying CUDA and catching the error (the fallback it already had)"),
]

SIDES = ("port", "dglmm")
MODELS = ("mf", "kgat")
PORT_MAIN = {"mf": "main_bprmf.py", "kgat": "main_kgat.py"}
DATA_NAME = "data"


def apply_port_edits(src: Path, dst: Path) -> list[str]:
    """Copy the port's code (not its data sets or trained models) from ``src`` to ``dst`` and apply
    :data:`PORT_EDITS`; returns one line per edit.  Raises ``ValueError`` when an edit does not match."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "datasets", "trained_model", "__pycache__"))
    done = []
    for name, old, new, occurrences, why in PORT_EDITS:
        path = dst / name
        text = path.read_text()
        if text.count(old) != occurrences:
            raise ValueError(f"{path}: expected {occurrences} occurrence(s) of {old!r}, found {text.count(old)}: "
                             "not the port version this script was written for")
        path.write_text(text.replace(old, new))
        done.append(f"{name}: {old!r} -> {new!r} ({why})")
    return done


def user_lines(pairs: np.ndarray, users: np.ndarray | None = None) -> str:
    """KGAT's ``uid iid iid ...`` lines (users ascending, items ascending) for the (user, item) ``pairs``;
    ``users``: only these users."""
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    if users is not None:
        pairs = pairs[np.isin(pairs[:, 0], users)]
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]) if len(pairs) else np.zeros(0, int)
    groups = np.split(pairs[:, 1], starts[1:])
    return "".join(f"{pairs[s, 0]} {' '.join(map(str, g))}\n" for s, g in zip(starts, groups, strict=True))


def write_port_layout(dataset: Dataset, root: Path) -> dict:
    """The port's layout of ``dataset`` under ``root``: ``select/data`` (test.txt = validation) and
    ``test/data`` (test.txt = test), both with train.txt = dglmm's train and ``kg_final.txt`` = dglmm's KG
    (``h r t``, KGAT ids: items are entities ``0..n_items-1``).  Users of valid/test without a training item
    are left out (the port looks every tested user up in its training dict); their count is returned with the
    item count the port will infer (``max id + 1`` over train and test), which can be below ``n_items``."""
    trained = np.unique(dataset.train[:, 0])
    kg = "".join(f"{h} {r} {t}\n" for h, r, t in dataset.kg.tolist())
    info = {}
    for folder, split in (("select", dataset.valid), ("test", dataset.test)):
        out = root / folder / DATA_NAME
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "train.txt", user_lines(dataset.train))
        write_text(out / "test.txt", user_lines(split, trained))
        write_text(out / "kg_final.txt", kg)
        items = np.concatenate([dataset.train[:, 1], split[:, 1]])
        info[folder] = {"users_without_train_dropped": int(len(np.setdiff1d(split[:, 0], trained))),
                        "port_n_items": int(items.max()) + 1, "port_n_users": int(max(dataset.train[:, 0].max(),
                                                                                          split[:, 0].max())) + 1}
    return info


# -- the port's side -----------------------------------------------------------------------------------------------
def port_args(model: str, data_dir: Path, seed: int, opts: argparse.Namespace) -> list[str]:
    """Command-line flags of the port's ``main_*.py`` for the shared settings."""
    common = ["--seed", str(seed), "--data_name", DATA_NAME, "--data_dir", f"{data_dir}/", "--use_pretrain", "0",
              "--embed_dim", "64", "--lr", str(opts.lr), "--n_epoch", str(opts.epochs), "--stopping_steps",
              str(opts.stopping_steps), "--evaluate_every", str(opts.eval_every), "--Ks", "[20]",
              "--test_batch_size", "10000"]
    if model == "mf":
        return [*common, "--l2loss_lambda", "1e-5", "--train_batch_size", "1024", "--print_every", "100000"]
    return [*common, "--relation_dim", "64", "--laplacian_type", "random-walk", "--aggregation_type",
            "bi-interaction", "--conv_dim_list", "[64, 32, 16]", "--mess_dropout", "[0.1, 0.1, 0.1]",
            "--kg_l2loss_lambda", "1e-5", "--cf_l2loss_lambda", "1e-5", "--cf_batch_size", "1024",
            "--kg_batch_size", "2048", "--cf_print_every", "100000", "--kg_print_every", "100000"]


#: evaluates the port's kept checkpoint with the port's own loader, model and ``evaluate`` (run in a subprocess)
PORT_TEST = r"""
import glob, json, logging, sys
port, model_name, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, port)
sys.argv = [sys.argv[0], *sys.argv[4:]]
import torch
from utils.model_helper import load_model
if model_name == "kgat":
    from parser.parser_kgat import parse_kgat_args as parse
    from data_loader.loader_kgat import DataLoaderKGAT as Loader
    from model.KGAT import KGAT
    from main_kgat import evaluate
    args = parse()
    data = Loader(args, logging)
    model = KGAT(args, data.n_users, data.n_entities, data.n_relations)
else:
    from parser.parser_bprmf import parse_bprmf_args as parse
    from data_loader.loader_bprmf import DataLoaderBPRMF as Loader
    from model.BPRMF import BPRMF
    from main_bprmf import evaluate
    args = parse()
    data = Loader(args, logging)
    model = BPRMF(args, data.n_users, data.n_items)
(checkpoint,) = glob.glob(args.save_dir + "model_epoch*.pth")
model = load_model(model, checkpoint)
_, metrics = evaluate(model, data, [20], torch.device("cpu"))
json.dump({"checkpoint": checkpoint, "recall@20": float(metrics[20]["recall"]),
           "ndcg@20": float(metrics[20]["ndcg"]), "n_test_users": len(data.test_user_dict)}, open(out, "w"))
"""


def run_port(model: str, seed: int, opts: argparse.Namespace, run_dir: Path) -> dict:
    """Train with the port's ``main_*.py`` (selecting on validation), then test its kept checkpoint."""
    port, env = opts.out / "port", {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished earlier attempt: start it again
    run_dir.mkdir(parents=True)
    flags = port_args(model, opts.out / "data" / "select", seed, opts)
    tic = time.time()
    with open(run_dir / "train.log", "w") as log:
        subprocess.run([sys.executable, str(port / PORT_MAIN[model]), *flags], cwd=run_dir, env=env, check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - tic
    (metrics_file,) = run_dir.glob("trained_model/*/*/*/metrics.tsv")
    (log_file,) = metrics_file.parent.glob("log*.log")
    script = run_dir / "port_test.py"
    script.write_text(PORT_TEST)
    test_flags = port_args(model, opts.out / "data" / "test", seed, opts)
    with open(run_dir / "test.log", "w") as log:
        subprocess.run([sys.executable, str(script), str(port), model, str(run_dir / "test.json"), *test_flags],
                       cwd=run_dir, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    test = json.loads((run_dir / "test.json").read_text())
    valid = read_port_metrics(metrics_file)
    return {"side": "port", "model": model, "seed": seed, "test": {"recall@20": test["recall@20"],
            "ndcg@20": test["ndcg@20"]}, "valid_recall@20": valid["best_recall@20"],
            "best_epoch": valid["best_epoch"], "epochs_run": valid["last_epoch"],
            "epoch_seconds": port_epoch_seconds(log_file.read_text(), model), "wall_seconds": round(seconds, 1)}


def read_port_metrics(path: Path) -> dict:
    """Best validation Recall@20 and its epoch (first maximum, as the port's ``early_stopping``) from the
    port's ``metrics.tsv``."""
    lines = path.read_text().split("\n")
    header = lines[0].split("\t")
    rows = [dict(zip(header, map(float, line.split("\t")), strict=True)) for line in lines[1:] if line.strip()]
    best = max(rows, key=lambda r: r["recall@20"])  # max() keeps the first maximum
    return {"best_recall@20": best["recall@20"], "best_epoch": int(best["epoch_idx"]),
            "last_epoch": int(rows[-1]["epoch_idx"])}


def port_epoch_seconds(log: str, model: str) -> list[float]:
    """Per-epoch training seconds from the port's log (KGAT: 'CF + KG Training', with the attention update;
    BPRMF: 'CF Training ... Total Iter')."""
    pattern = (r"CF \+ KG Training: Epoch \d+ \| Total Time ([\d.]+)s" if model == "kgat"
               else r"CF Training: Epoch \d+ Total Iter \d+ \| Total Time ([\d.]+)s")
    return [float(x) for x in re.findall(pattern, log)]


# -- dglmm's side --------------------------------------------------------------------------------------------------
def dglmm_overrides(model: str, seed: int, opts: argparse.Namespace) -> list[str]:
    """dglmm options for the shared settings (``train.patience`` counts evaluations, like ``stopping_steps``)."""
    common = [f"train.seed={seed}", f"train.epochs={opts.epochs}", f"train.eval_every={opts.eval_every}",
              f"train.patience={opts.stopping_steps}", "train.batch_size=1024", f"train.lr={opts.lr}",
              "train.progress=false", "model.embedding_dim=64", "model.reg_weight=1e-5"]
    if model == "mf":
        return common
    return [*common, "model.layer_sizes=[64,32,16]", "model.relation_dim=64", "model.message_dropout=0.1",
            "model.aggregator=bi", "model.attention=epoch", "model.kg_batch_size=2048", "model.kg_reg_weight=1e-5",
            "model.kg_schedule=alternate", "model.kg_optimizer=separate", "model.pretrain=null"]


def run_dglmm(model: str, seed: int, opts: argparse.Namespace, run_dir: Path, dataset: Dataset) -> dict:
    import torch

    from dglmm.train.run import resolve_model_config, run_experiment
    torch.set_num_threads(1)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = resolve_model_config(model, dataset.name, [], dglmm_overrides(model, seed, opts))
    tic = time.time()
    summary = run_experiment(model, dataset, config, run_dir, seeds=1, graph_cache=False)
    records = [json.loads(line) for line in (run_dir / "seed0" / "metrics.jsonl").read_text().splitlines()]
    return {"side": "dglmm", "model": model, "seed": seed,
            "test": {k: summary["test"][k]["mean"] for k in ("recall@20", "ndcg@20")},
            "valid_recall@20": summary["valid"]["recall@20"]["mean"], "best_epoch": summary["best_epochs"][0],
            "epochs_run": len(records), "epoch_seconds": [r["train_seconds"] for r in records],
            "wall_seconds": round(time.time() - tic, 1)}


def check_settings(out: Path, settings: dict) -> None:
    """Refuse to resume into a folder whose finished runs used other settings (their results would mix)."""
    for path in out.glob("*_seed*/result.json"):
        earlier = json.loads(path.read_text()).get("settings")
        if earlier != settings:
            sys.exit(f"parity_kgat_pytorch: error: {path} was made with {earlier}, not {settings}: use another --out")


# -- the table -----------------------------------------------------------------------------------------------------
def collect(out: Path) -> dict[tuple[str, str], list[dict]]:
    results: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(out.glob("*_seed*/result.json")):
        r = json.loads(path.read_text())
        results.setdefault((r["side"], r["model"]), []).append(r)
    return results


def validation_curve(run_dir: Path, side: str) -> dict[int, float]:
    """Validation Recall@20 at every evaluated epoch of one run (the port's ``metrics.tsv``, dglmm's
    ``metrics.jsonl``)."""
    if side == "port":
        (path,) = run_dir.glob("trained_model/*/*/*/metrics.tsv")
        lines = path.read_text().split("\n")
        header = lines[0].split("\t")
        rows = [dict(zip(header, map(float, line.split("\t")), strict=True)) for line in lines[1:] if line.strip()]
        return {int(r["epoch_idx"]): r["recall@20"] for r in rows}
    records = [json.loads(line) for line in (run_dir / "seed0" / "metrics.jsonl").read_text().splitlines()]
    return {r["epoch"]: r["valid"]["recall@20"] for r in records if "valid" in r}


def curves(out: Path) -> str:
    """Markdown: mean validation Recall@20 over seeds at each evaluated epoch, per side and model."""
    results = collect(out)
    rows, epochs = [], set()
    for side in SIDES:
        for model in MODELS:
            runs = results.get((side, model), [])
            per_run = [validation_curve(out / f"{side}_{model}_seed{r['seed']}" / "run", side) for r in runs]
            if not per_run:
                continue
            common = sorted(set.intersection(*(set(c) for c in per_run)))
            epochs.update(common)
            rows.append((side, model, {e: float(np.mean([c[e] for c in per_run])) for e in common}))
    epochs = sorted(epochs)
    lines = ["| side | model | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
             "|---|---|" + "---|" * len(epochs)]
    lines += [f"| {side} | {model} | " + " | ".join(f"{c[e]:.4f}" if e in c else "-" for e in epochs) + " |"
              for side, model, c in rows]
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if values else "-"


def table(out: Path) -> str:
    """Markdown: per side and model, test Recall@20 / NDCG@20 (mean ± population std over seeds), the seeds,
    best epochs, seconds per epoch (median over all epochs of all seeds); then the KGAT - MF gap per side."""
    results = collect(out)
    lines = ["| side | model | seeds | test Recall@20 | test NDCG@20 | valid Recall@20 | best epochs | "
             "s / epoch |", "|---|---|---|---|---|---|---|---|"]
    for side in SIDES:
        for model in MODELS:
            runs = results.get((side, model), [])
            if not runs:
                continue
            seconds = [s for r in runs for s in r["epoch_seconds"]]
            lines.append(f"| {side} | {model} | {','.join(str(r['seed']) for r in runs)} | "
                         f"{mean_std([r['test']['recall@20'] for r in runs])} | "
                         f"{mean_std([r['test']['ndcg@20'] for r in runs])} | "
                         f"{mean_std([r['valid_recall@20'] for r in runs])} | "
                         f"{','.join(str(r['best_epoch']) for r in runs)} | {np.median(seconds):.2f} |")
    lines += ["", "| side | KGAT - MF test Recall@20 | KGAT - MF test NDCG@20 | KGAT / MF s per epoch |",
              "|---|---|---|---|"]
    for side in SIDES:
        mf, kg = results.get((side, "mf")), results.get((side, "kgat"))
        if not (mf and kg):
            continue
        gap = {m: np.mean([r["test"][m] for r in kg]) - np.mean([r["test"][m] for r in mf])
               for m in ("recall@20", "ndcg@20")}
        ratio = (np.median([s for r in kg for s in r["epoch_seconds"]])
                 / np.median([s for r in mf for s in r["epoch_seconds"]]))
        lines.append(f"| {side} | {gap['recall@20']:+.4f} | {gap['ndcg@20']:+.4f} | {ratio:.0f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--out", type=Path, required=True, help="folder for the port copy, data, runs, results")
    parser.add_argument("--port", type=Path, help="a checkout of LunaBlack/KGAT-pytorch (run only)")
    parser.add_argument("-d", "--dataset", default="book-crossing", help="a KGAT-layout dataset (name or path)")
    parser.add_argument("--epochs", type=int, default=10, help="epoch cap, the same on both sides")
    parser.add_argument("--eval-every", type=int, default=2, help="validate every N epochs (both sides)")
    parser.add_argument("--stopping-steps", type=int, default=10,
                        help="stop after this many validations without a better Recall@20 (both sides)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (both sides)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[], metavar="SIDE_MODEL",
                        help="run only these, e.g. port_kgat dglmm_mf")
    opts = parser.parse_args()
    opts.out = opts.out.resolve()
    if opts.command == "table":
        print(table(opts.out), "\n\nvalidation Recall@20 (mean over seeds):\n", curves(opts.out), sep="")
        return
    if opts.port is None:
        parser.error("run needs --port")
    from dglmm.data.readers import load_dataset
    settings = {k: getattr(opts, k) for k in ("dataset", "epochs", "eval_every", "stopping_steps", "lr")}
    check_settings(opts.out, settings)
    dataset = load_dataset(opts.dataset)
    edits = apply_port_edits(opts.port.resolve(), opts.out / "port")
    info = write_port_layout(dataset, opts.out / "data")
    write_json(opts.out / "setup.json", {"port_edits": edits, "data": info, "settings": vars(opts) | {
        "out": str(opts.out), "port": str(opts.port)}})
    print("port edits:\n  " + "\n  ".join(edits), "\ndata:", info, flush=True)
    for seed in range(opts.seeds):  # MF first (cheap), then KGAT, seed by seed, so that seeds stay paired
        for model in MODELS:
            for side in SIDES:
                name = f"{side}_{model}"
                result_file = opts.out / f"{name}_seed{seed}" / "result.json"
                if (opts.only and name not in opts.only) or result_file.exists():
                    continue
                tic = time.time()
                print(f"{name} seed {seed} ...", flush=True)
                run_dir = opts.out / f"{name}_seed{seed}" / "run"
                result = (run_port(model, seed, opts, run_dir) if side == "port"
                          else run_dglmm(model, seed, opts, run_dir, dataset))
                write_json(result_file, {**result, "settings": settings})
                print(f"  test recall@20 {result['test']['recall@20']:.4f} ndcg@20 {result['test']['ndcg@20']:.4f}"
                      f", best epoch {result['best_epoch']}, {np.median(result['epoch_seconds']):.2f} s/epoch "
                      f"({time.time() - tic:.0f} s)", flush=True)
    print(table(opts.out))


if __name__ == "__main__":
    main()
