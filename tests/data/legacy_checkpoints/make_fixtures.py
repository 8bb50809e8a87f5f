"""Write the legacy checkpoints of this folder with the dglmm checkout on PYTHONPATH (see README.md).

Usage: PYTHONPATH=<old checkout> python tests/data/legacy_checkpoints/make_fixtures.py tests/data/legacy_checkpoints
Each case trains one epoch on a tiny synthetic dataset and keeps ``<case>.pt`` (the trainer's checkpoint.pt)
and ``<case>.npy`` (the checkpoint model's scores of every user against every item).
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from dglmm.data.synthetic import make_synthetic
from dglmm.train.run import prepare_run

#: case -> (model, model options); the options that put the feature projections/copies on the model
CASES = {
    "micro_trainable": ("micro", {"train_features": True}),
    "lattice": ("lattice", {}),
    "tmfun_features": ("tmfun", {"graph_input": "features"}),
    "slifmr_features": ("slifmr", {"mm_input": "features"}),
    "camgr_trainable": ("camgr", {"trainable_features": True}),
}


def dataset():
    return make_synthetic(n_users=20, n_items=24, n_clusters=3, modality_dims={"image": 6, "text": 4},
                          n_kg_attributes=4, seed=0)


TRAIN = {"epochs": 1, "batch_size": 64, "seed": 0, "checkpoint_every": 1}
#: cases also trained for two epochs: ``<case>.epoch2.npy`` are the scores a resume of ``<case>.pt`` must give
RESUMED = ("micro_trainable", "camgr_trainable")


def train(case: str, epochs: int, checkpoint: Path, scores: Path) -> None:
    """Train ``case`` for ``epochs``; copy its checkpoint.pt to ``checkpoint`` and save the scores of that state."""
    model, options = CASES[case]
    opts = {"embedding_dim": 4, **({"mlp_hidden": 4} if model == "camgr" else {}), **options}
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run(model, dataset(), {"train": {**TRAIN, "epochs": epochs}, "model": opts}, Path(tmp))
        run.trainer.fit()
        shutil.copy(Path(tmp) / "checkpoint.pt", checkpoint)
    run.model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    run.model.eval()
    with torch.no_grad():
        np.save(scores, run.model.score(run.model(run.graph), torch.arange(run.model.n_users)).numpy())


def main(out: Path) -> None:
    for case in CASES:
        train(case, 1, out / f"{case}.pt", out / f"{case}.npy")
    with tempfile.TemporaryDirectory() as tmp:
        for case in RESUMED:
            train(case, 2, Path(tmp) / "checkpoint.pt", out / f"{case}.epoch2.npy")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
