"""Regenerate the TMFUN paper's results (SIGIR'23) with dglmm and print them beside the paper's numbers.

    python recipes/tmfun.py                                  # synthetic data, every table, 3 seeds
    python recipes/tmfun.py -d tiktok --tables 2 --seeds 1   # the variants on TikTok
    python recipes/tmfun.py --quick                          # every table, short training, one seed

Tables: ``1`` the overall comparison (the models of Table 1 that dglmm has: MF, NGCF, LightGCN, VBPR,
LATTICE, MICRO, TMFUN), ``2`` the variants (TMFUN/MF, TMFUN/NGCF, TMFUN-mm, TMFUN-att, TMFUN), ``fig2``
alpha x beta over {1e-5, 1e-4, 1e-3, 1e-2} (Figure 2): a heat map PNG of validation and test Recall@20 in the
output folder.  Every number is produced by the runs; the paper's numbers are on Amazon Baby / Sports /
Clothing, so compare orderings, not values, when the dataset differs.

Expected time: ``--quick`` (every table, one seed) took 9 min of CPU time on one thread (25 min wall while
other jobs shared the 2-core machine); the default run (3 seeds, training to early stopping) takes many times
that: run one table at a time (``--tables``).
"""

from __future__ import annotations

import json
import sys

from dglmm.recipe import (
    Recipe,
    cell,
    paper_table,
    plot_heatmaps,
    recipe_main,
    recipe_parser,
    write_text,
)

# Recall@20 / NDCG@20 of the paper (Tables 1 and 2) on Amazon Baby, Sports, Clothing.
PAPER_TABLE1 = {
    "MF": {"baby": (.0440, .0200), "sports": (.0430, .0202), "clothing": (.0191, .0088)},
    "NGCF": {"baby": (.0591, .0261), "sports": (.0695, .0318), "clothing": (.0387, .0168)},
    "LightGCN": {"baby": (.0698, .0319), "sports": (.0782, .0369), "clothing": (.0470, .0215)},
    "VBPR": {"baby": (.0486, .0213), "sports": (.0582, .0265), "clothing": (.0481, .0205)},
    "LATTICE": {"baby": (.0829, .0368), "sports": (.0915, .0424), "clothing": (.0710, .0316)},
    "MICRO": {"baby": (.0865, .0389), "sports": (.0968, .0445), "clothing": (.0782, .0351)},
    "TMFUN": {"baby": (.1032, .0452), "sports": (.1112, .0496), "clothing": (.0962, .0431)},
}
PAPER_TABLE2 = {
    "TMFUN/MF": {"baby": (.0852, .0379), "sports": (.0888, .0381), "clothing": (.0828, .0366)},
    "TMFUN/NGCF": {"baby": (.0812, .0345), "sports": (.0924, .0397), "clothing": (.0863, .0365)},
    "TMFUN-mm": {"baby": (.0828, .0370), "sports": (.0913, .0406), "clothing": (.0568, .0252)},
    "TMFUN-att": {"baby": (.1022, .0442), "sports": (.1106, .0489), "clothing": (.0930, .0417)},
    "TMFUN": {"baby": (.1032, .0452), "sports": (.1112, .0496), "clothing": (.0962, .0431)},
}
VARIANTS = {"TMFUN/MF": ["model.backbone=mf"], "TMFUN/NGCF": ["model.backbone=ngcf"],
            "TMFUN-mm": ["model.variant=tmfun-mm"], "TMFUN-att": ["model.variant=tmfun-att"], "TMFUN": []}
FIG2_VALUES = [1e-5, 1e-4, 1e-3, 1e-2]


def _cl(r: Recipe) -> list[str]:
    return [f"model.cl_max_items={r.args.cl_max_items}"]


def table1(r: Recipe) -> str:
    rows = []
    for label, model, extra in [("MF", "mf", []), ("NGCF", "ngcf", []), ("LightGCN", "lightgcn", []),
                                ("VBPR", "vbpr", []), ("LATTICE", "lattice", []), ("MICRO", "micro", _cl(r)),
                                ("TMFUN", "tmfun", _cl(r))]:
        s = r.run("1", label, model, extra)
        if s is None:
            continue
        paper = PAPER_TABLE1[label][r.args.paper_dataset]
        rows.append([label, cell(s, "recall@20"), cell(s, "ndcg@20"), f"{paper[0]:.4f}", f"{paper[1]:.4f}"])
    head = ["model", "R@20", "NDCG@20", "paper R@20", "paper NDCG@20"]
    return "Table 1 - overall comparison (test at the best validation epoch)\n" + paper_table(head, rows)


def table2(r: Recipe) -> str:
    rows = []
    for label, extra in VARIANTS.items():
        s = r.run("2", label, "tmfun", [*extra, *([] if label == "TMFUN-mm" else _cl(r))])  # -mm: no L_C
        if s is None:
            continue
        paper = PAPER_TABLE2[label][r.args.paper_dataset]
        rows.append([label, cell(s, "recall@20"), cell(s, "ndcg@20"), f"{paper[0]:.4f}", f"{paper[1]:.4f}"])
    head = ["variant", "R@20", "NDCG@20", "paper R@20", "paper NDCG@20"]
    return ("Table 2 - TMFUN variants (docs/models/tmfun.md defines each)\n" + paper_table(head, rows))


def figure2(r: Recipe) -> str:
    """alpha (L_mmbpr) x beta (L_C), validation and test Recall@20; every cell always runs (``--only`` aside)."""
    values = r.args.fig2_values
    valid = [[0.0] * len(values) for _ in values]
    test = [[0.0] * len(values) for _ in values]
    only, r.args.only = r.args.only, None
    try:
        for a, alpha in enumerate(values):
            for b, beta in enumerate(values):
                s = r.run("fig2", f"alpha={alpha:g} beta={beta:g}", "tmfun",
                          [f"model.mmbpr_weight={alpha}", f"model.cl_weight={beta}", *_cl(r)])
                valid[a][b] = s["valid"]["recall@20"]["mean"]
                test[a][b] = s["test"]["recall@20"]["mean"]
    finally:
        r.args.only = only
    labels = [f"{v:g}" for v in values]
    path = r.out / "figure2.png"
    plot_heatmaps({"validation Recall@20": valid, "test Recall@20": test}, labels, labels, path,
                  xlabel="beta (L_C weight)", ylabel="alpha (L_mmbpr weight)")
    write_text(r.out / "figure2.json", json.dumps({"values": values, "valid": valid, "test": test}, indent=1))
    rows = [[f"alpha={labels[a]}", *(f"{valid[a][b]:.4f} / {test[a][b]:.4f}" for b in range(len(values)))]
            for a in range(len(values))]
    head = ["valid / test R@20", *(f"beta={x}" for x in labels)]
    return (f"Figure 2 - alpha x beta (paper: best at 1e-3 / 1e-3 on Baby, 1e-4 / 1e-4 on Clothing); heat map "
            f"{path}\n" + paper_table(head, rows))


TABLES = {"1": table1, "2": table2, "fig2": figure2}


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__, TABLES, ["baby", "sports", "clothing"], "runs/recipes/tmfun")
    parser.add_argument("--cl-max-items", type=int, default=1024,
                        help="MICRO's and TMFUN's InfoNCE over a random subset of items per batch (0: all)")
    parser.add_argument("--fig2-values", type=float, nargs="+", default=FIG2_VALUES,
                        help="alpha and beta values of Figure 2 (paper: 1e-5 1e-4 1e-3 1e-2)")
    return recipe_main("TMFUN", parser, TABLES, argv)


if __name__ == "__main__":
    sys.exit(main())
