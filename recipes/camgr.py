"""Regenerate the CAmgr paper's tables and figures (Mathematics'24) with dglmm, beside the paper's numbers.

    python recipes/camgr.py                                   # synthetic data, every table, 3 seeds
    python recipes/camgr.py -d tiktok --tables 2 3 --token-set sampled
    python recipes/camgr.py --quick                           # every table, short training, one seed

Tables: ``2`` overall comparison (the models of Table 2 that dglmm has, MGCN included; Recall and NDCG at 10
and 20), ``3`` ablation (w/o IUID, w/o CAFF), ``4`` the InfoNCE weight alpha_1, ``fig2`` modality subsets and
``fig3`` the number of semantic neighbours k (both also written as PNG files), and ``ladder``: MGCN -> + U_i
in the purifier -> + GAT user-item view -> + cross-attention fusion, then CAmgr's own readings, then CAmgr
without one or two of its changes (``dglmm.models.camgr.LADDER``), every row a ``camgr`` config with the same
training budget, each compared with the row it changes (paired Wilcoxon over users; t-test over seeds).  Every
number is produced by the runs; the paper's numbers are on Amazon Baby / Sports / Clothing, so compare
orderings, not values, on other data.

    python recipes/camgr.py -d tiktok --tables ladder --set train.epochs=60   # the ladder at a fixed budget

Expected time: ``--quick`` (every table, one seed) took 8 min of CPU time on one thread (23 min wall while
other jobs shared the 2-core machine); the default run (3 seeds, training to early stopping) takes many times
that: run one table at a time (``--tables``).
"""

from __future__ import annotations

import sys

import dglmm
from dglmm.recipe import (
    LADDER,
    Recipe,
    cell,
    format_table,
    paper_table,
    plt,
    recipe_main,
    recipe_parser,
    selected_runs,
)

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PAPER_TABLE2 = {  # model: {dataset: (R@10, R@20, NDCG@10, NDCG@20)}
    "MF": {"baby": (.0357, .0575, .0192, .0249), "sports": (.0432, .0653, .0241, .0298),
           "clothing": (.0187, .0279, .0103, .0126)},
    "LightGCN": {"baby": (.0479, .0754, .0257, .0328), "sports": (.0569, .0864, .0311, .0387),
                 "clothing": (.0340, .0526, .0188, .0236)},
    "VBPR": {"baby": (.0423, .0663, .0223, .0284), "sports": (.0558, .0856, .0307, .0384),
             "clothing": (.0280, .0414, .0159, .0193)},
    "MICRO": {"baby": (.0584, .0929, .0318, .0407), "sports": (.0679, .1050, .0367, .0463),
              "clothing": (.0521, .0772, .0283, .0347)},
    "MGCN": {"baby": (.0620, .0964, .0339, .0427), "sports": (.0729, .1106, .0397, .0496),
             "clothing": (.0641, .0945, .0347, .0428)},
    "CAmgr": {"baby": (.0640, .1056, .0382, .0437), "sports": (.0751, .1124, .0429, .0523),
              "clothing": (.0695, .1102, .0386, .0478)},
}
PAPER_TABLE3 = {  # variant: {dataset: (R@20, NDCG@20)}
    "CAmgr": {"baby": (.1056, .0437), "sports": (.1124, .0523), "clothing": (.1102, .0478)},
    "w/o IUID": {"baby": (.0563, .0188), "sports": (.0612, .0259), "clothing": (.0584, .0216)},
    "w/o CAFF": {"baby": (.0847, .0386), "sports": (.0905, .0341), "clothing": (.0862, .0254)},
}
PAPER_TABLE4 = {  # alpha_1: {dataset: (R@20, NDCG@20)}
    0.001: {"baby": (.0592, .0395), "sports": (.1006, .0493), "clothing": (.1039, .0447)},
    0.005: {"baby": (.1035, .0428), "sports": (.1087, .0501), "clothing": (.1075, .0461)},
    0.01: {"baby": (.1056, .0437), "sports": (.1124, .0523), "clothing": (.1102, .0478)},
    0.05: {"baby": (.1010, .0421), "sports": (.1093, .0507), "clothing": (.0580, .0269)},
    0.1: {"baby": (.0479, .0194), "sports": (.0373, .0188), "clothing": (.0584, .0263)},
}
PAPER_FIG3_BEST_K = {"baby": 20, "sports": 15, "clothing": 15}


def camgr_options(r: Recipe) -> list[str]:
    """The CAmgr options every row shares: the attention axis (and, over nodes, its token set)."""
    if r.args.attention_axis == "channels":
        return ["model.attention_axis=channels"]
    return ["model.attention_axis=nodes", f"model.token_set={r.args.token_set}",
            f"model.n_key_tokens={r.args.key_tokens}"]


def table2(r: Recipe) -> str:
    rows = []
    for label, model, extra in [("MF", "mf", []), ("LightGCN", "lightgcn", []), ("VBPR", "vbpr", []),
                                ("MICRO", "micro", [f"model.cl_max_items={r.args.cl_max_items}"]),
                                ("MGCN", "mgcn", []), ("CAmgr", "camgr", camgr_options(r))]:
        s = r.run("2", label, model, extra)
        if s is None:
            continue
        paper = PAPER_TABLE2[label][r.args.paper_dataset]
        rows.append([label, *(cell(s, m) for m in METRICS), *(f"{p:.4f}" for p in paper)])
    head = ["model", "R@10", "R@20", "NDCG@10", "NDCG@20", "paper R@10", "paper R@20", "paper NDCG@10",
            "paper NDCG@20"]
    return "Table 2 - overall comparison (test at the best validation epoch)\n" + paper_table(head, rows)


def table3(r: Recipe) -> str:
    rows = []
    for label in PAPER_TABLE3:
        variant = "camgr" if label == "CAmgr" else label
        s = r.run("3", label, "camgr", [f"model.variant={variant}", *camgr_options(r)])
        if s is None:
            continue
        paper = PAPER_TABLE3[label][r.args.paper_dataset]
        rows.append([label, cell(s, "recall@20"), cell(s, "ndcg@20"), f"{paper[0]:.4f}", f"{paper[1]:.4f}"])
    head = ["variant", "R@20", "NDCG@20", "paper R@20", "paper NDCG@20"]
    return ("Table 3 - ablation: w/o IUID = aligned features instead of ID-purified ones (eqs. 2-6 removed); "
            "w/o CAFF = mean of the modality representations instead of the cross-attention fusion (eqs. "
            "15-26 removed)\n" + paper_table(head, rows))


def table4(r: Recipe) -> str:
    rows = []
    for alpha in r.args.alphas:
        s = r.run("4", f"alpha_1={alpha:g}", "camgr", [f"model.cl_weight={alpha}", *camgr_options(r)])
        if s is None:
            continue
        paper = PAPER_TABLE4.get(alpha, {}).get(r.args.paper_dataset)
        rows.append([f"{alpha:g}", cell(s, "recall@20"), cell(s, "ndcg@20"),
                     f"{paper[0]:.4f}" if paper else "-", f"{paper[1]:.4f}" if paper else "-"])
    head = ["alpha_1", "R@20", "NDCG@20", "paper R@20", "paper NDCG@20"]
    return "Table 4 - weight alpha_1 of the InfoNCE loss\n" + paper_table(head, rows)


def _plot(r: Recipe, name: str, xs: list[str], summaries: list[dict], xlabel: str, title: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("recall@20", "ndcg@20"), strict=True):
        ys = [s["test"][metric]["mean"] for s in summaries]
        errs = [s["test"][metric].get("std", 0.0) for s in summaries]
        ax.bar(xs, ys, yerr=errs, color="#4c72b0") if xlabel == "modalities" else ax.errorbar(
            xs, ys, yerr=errs, marker="o")
        ax.set(xlabel=xlabel, ylabel=metric, title=f"{title} ({r.dataset.name})")
    fig.tight_layout()
    path = r.out / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def figure2(r: Recipe) -> str:
    names = sorted(r.dataset.modalities)
    subsets = [[m] for m in names] + ([names] if len(names) > 1 else [])
    rows, done, labels = [], [], []
    for subset in subsets:
        label = "+".join(subset)
        s = r.run("fig2", label, "camgr", ["model.modalities=[" + ",".join(subset) + "]", *camgr_options(r)])
        if s is None:
            continue
        rows.append([label, cell(s, "recall@20"), cell(s, "ndcg@20")])
        done.append(s)
        labels.append(label)
    path = _plot(r, "figure2_modalities", labels, done, "modalities", "CAmgr, modality subsets") if done else "-"
    return (f"Figure 2 - modality subsets (paper: both > image > text on Amazon); figure: {path}\n"
            + format_table(["modalities", "R@20", "NDCG@20"], rows))


def figure3(r: Recipe) -> str:
    rows, done, labels = [], [], []
    for k in r.args.ks:
        s = r.run("fig3", f"k={k}", "camgr", [f"model.knn_k={k}", *camgr_options(r)])
        if s is None:
            continue
        rows.append([str(k), cell(s, "recall@20"), cell(s, "ndcg@20")])
        done.append(s)
        labels.append(str(k))
    path = _plot(r, "figure3_knn_k", labels, done, "k", "CAmgr, semantic neighbours k") if done else "-"
    best = PAPER_FIG3_BEST_K[r.args.paper_dataset]
    return (f"Figure 3 - semantic neighbours k (paper's best on {r.args.paper_dataset.title()}: k = {best}); "
            f"figure: {path}\n" + format_table(["k", "R@20", "NDCG@20"], rows))


def ladder_reference(index: int) -> int | None:
    """The row a ladder row is compared with: the rung below it, or CAmgr for the rows that drop changes."""
    camgr = next(i for i, (label, _) in enumerate(LADDER) if label == "CAmgr")
    return None if index == 0 else index - 1 if index <= camgr else camgr


def ladder_options(r: Recipe, options: dict) -> list[str]:
    """``--set`` overrides of a ladder row (the cross-attention's axis options only where it has one)."""
    sets = [f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
    return sets + (camgr_options(r) if options.get("fusion", "cross_attention") == "cross_attention" else [])


def compared(summary: dict, reference: dict | None) -> list[str]:
    """Mean differences of test R@20 and NDCG@20 against ``reference``, with the Wilcoxon and t-test p."""
    a, b = (selected_runs(reference), selected_runs(summary)) if reference else (None, None)
    if a is None or b is None:
        return ["-"] * 4
    try:
        table = dglmm.compare_runs(a, b, metrics=("recall@20", "ndcg@20"))
    except dglmm.InputError:
        return ["-"] * 4
    out = [f"{row.diff:+.4f}{'*' if row.significant else ''}" for row in table.itertuples()]
    recall = next(table.itertuples())
    return [*out, f"{recall.p_wilcoxon:.3g}", "-" if recall.p_ttest is None or recall.p_ttest != recall.p_ttest else f"{recall.p_ttest:.3g}"]


def ladder(r: Recipe) -> str:
    rows, done = [], {}
    for index, (label, options) in enumerate(LADDER):
        s = r.run("ladder", label, "camgr", ladder_options(r, options))
        if s is None:
            continue
        done[index] = s
        ref = ladder_reference(index)
        rows.append([label, "-" if ref is None else LADDER[ref][0], cell(s, "recall@20"), cell(s, "ndcg@20"),
                     *compared(s, done.get(ref) if ref is not None else None)])
    head = ["row", "compared with", "R@20", "NDCG@20", "d R@20", "d NDCG@20", "p Wilcoxon (R@20)",
            "p t-test seeds (R@20)"]
    return ("Ladder MGCN -> CAmgr (every row a camgr config, the same budget; d = row - the row it is compared "
            "with, * significant at 0.05 by Wilcoxon over users and, with several seeds, the t-test over seeds)\n"
            + format_table(head, rows))


TABLES = {"2": table2, "3": table3, "4": table4, "fig2": figure2, "fig3": figure3, "ladder": ladder}


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__, TABLES, ["baby", "sports", "clothing"], "runs/recipes/camgr")
    parser.add_argument("--attention-axis", default="channels", choices=("channels", "nodes"),
                        help="what CAmgr's cross-attention attends over (model.attention_axis)")
    parser.add_argument("--token-set", default="all", choices=("all", "sampled", "batch"),
                        help="CAmgr's cross-attention keys in training with --attention-axis nodes (model.token_set)")
    parser.add_argument("--key-tokens", type=int, default=1024, help="model.n_key_tokens of --token-set sampled")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(PAPER_TABLE4), help="Table 4 sweep")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 15, 20, 25], help="Figure 3 sweep")
    parser.add_argument("--cl-max-items", type=int, default=1024,
                        help="MICRO's InfoNCE over a random subset of items per batch (0: all, as its eq. 9)")
    return recipe_main("CAmgr", parser, TABLES, argv)


if __name__ == "__main__":
    sys.exit(main())
