"""A markdown table of finished ``dglmm tune`` studies, read from their files (journal, ``trials.csv``,
``best-trial<N>/summary.json``): budget, trials pruned, epochs trained, search wall-clock, best trial and the
test metrics of its seeds (mean ± std).

    python benchmarks/summarize_tune.py runs/tune/lightgcn-tiktok runs/tune/mf-tiktok ...
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import pandas as pd
import yaml


def _search_seconds(folder: Path) -> float:
    """Search wall-clock: the first trial's start to the last trial's end, from the study's journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    trials = optuna.load_study(study_name=folder.name, storage=storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.datetime_complete is not None and not t.user_attrs.get("surplus")]
    search = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return search


def _fmt(stats: dict, key: str) -> str:
    return f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}"


def row(folder: Path) -> str:
    record = yaml.safe_load((folder / "study.yaml").read_text())
    table = pd.read_csv(folder / "trials.csv")
    finished = table[table["state"].isin(["complete", "pruned"])]
    search = _search_seconds(folder)
    summaries = sorted(glob.glob(str(folder / "best-trial*" / "summary.json")))
    summary = json.loads(Path(summaries[-1]).read_text()) if summaries else None
    seeds_seconds = sum(json.loads(p.read_text())["train_seconds"]
                        for p in Path(summaries[-1]).parent.glob("seed*/results.json")) if summary else 0.0
    params = ", ".join(f"{k.split('.', 1)[1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]} {v}"
                       for k, v in (summary or {}).get("params", {}).items())
    test = (f"{_fmt(summary['test'], 'recall@20')} | {_fmt(summary['test'], 'ndcg@20')} | "
            f"{', '.join(map(str, summary['best_epochs']))}") if summary else "- | - | -"
    valid = f"{summary['valid_trial']:.4f}" if summary else "-"
    return (f"| {record['definition']['model']} | {len(finished)} ({int(finished['pruned'].sum())} pruned) | "
            f"{int(finished['epochs_run'].sum())} | {search:,.0f} s | {seeds_seconds:,.0f} s | "
            f"trial {summary['trial'] if summary else '-'}: {params} | {valid} | {test} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="study folders")
    args = parser.parse_args()
    print("| model | trials | epochs trained | search wall-clock | seeds' training | best trial (validation) "
          "| valid R@20 | test R@20 | test NDCG@20 | best epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print(row(Path(folder)))


if __name__ == "__main__":
    main()
