"""MF-BPR (Rendle et al., UAI'09): ID embeddings scored by inner product, trained with BPR."""

from __future__ import annotations

from pathlib import Path

import dgl
import torch

from dglmm.config import TrainConfig
from dglmm.data.dataset import Dataset
from dglmm.errors import CheckpointError, InputError
from dglmm.io import load_checkpoint, read_run_config, resolve_run_dir, seed_run_dirs
from dglmm.models.base import ModelConfig, Recommender, Representations, register


@register
class MF(Recommender):
    """MF-BPR (UAI'09): ``y_ui = e_u . e_i``; L2 on the batch embeddings."""

    name = "mf"
    uses_every_parameter = True  # also LightGCN and NGCF, which build on it
    can_be_backbone = True       # likewise

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: ModelConfig) -> None:
        super().__init__(dataset, graph, config)
        self.add_id_tables(config.embedding_dim)

    def forward(self, graph: dgl.DGLGraph) -> Representations:
        return Representations(self.user_emb.weight, self.item_emb.weight)


MF_STATE_KEYS = frozenset({"user_emb.weight", "item_emb.weight"})


def _seed_run(path: Path, seed: int | None) -> Path:
    """The single-seed run behind ``path``: its only one, else the one trained with ``seed``."""
    runs = seed_run_dirs(path)
    if len(runs) == 1 or seed is None:
        return resolve_run_dir(path)
    same = [run for run in runs if read_run_config(run).get("train", {}).get("seed", TrainConfig.seed) == seed]
    if not same:
        raise InputError(f"{path}: holds {len(runs)} seeds ({', '.join(run.name for run in runs)}), none trained "
                         f"with seed {seed}; name one, e.g. {runs[0]}")
    return same[0]


def load_mf_embeddings(spec: str | Path, n_users: int, n_items: int, dim: int, option: str = "model.pretrain",
                       seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The user and item embeddings ``([n_users, dim], [n_items, dim])`` of a trained dglmm MF run.

    ``spec`` is an MF run folder (``runs/<run>`` as ``dglmm train`` prints it, or ``runs/<run>/seed0``: its
    ``best.pt`` is read; of a folder with several seeds, the one whose ``train.seed`` is ``seed``, so that each
    seed of a run starts from the MF run of the same seed) or a checkpoint file of one
    (``best.pt`` or ``checkpoint.pt``).  The file is read with ``weights_only=True``
    (:func:`dglmm.io.load_checkpoint`); when a ``config.yaml`` sits beside it, its ``model_name`` must be
    ``mf`` (LightGCN's state dict has the same two keys).  Every problem (missing or unreadable file, another
    model's checkpoint, shapes that do not fit the dataset or ``embedding_dim``) is one :class:`InputError`
    line naming ``option`` and the file.  The MF run must have been trained on the same dataset and split
    (same ``data`` section): only the shapes can be checked here.
    """
    path = Path(spec)
    if path.is_dir() and (path / "best.pt").is_file():
        path = path / "best.pt"
    elif path.is_dir():  # a run folder as every command takes it: the one train printed, a grid's
        try:
            path = _seed_run(path, seed) / "best.pt"
        except InputError as exc:
            raise InputError(f"{option}: {exc}") from None
    if not path.is_file():
        raise InputError(f"{option}: {path}: not found (give a dglmm MF run folder or its best.pt)")
    if (path.parent / "config.yaml").is_file():
        try:
            model_name = read_run_config(path.parent)["model_name"]
        except InputError as exc:
            raise InputError(f"{option}: {exc}") from None
        if model_name != "mf":
            raise InputError(f"{option}: {path}: a {model_name!r} run ({path.parent / 'config.yaml'}), "
                             "not an MF run")
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise InputError(f"{option}: {exc}") from None
    model = state.get("model")
    if not isinstance(model, dict) or set(model) != MF_STATE_KEYS:
        found = ", ".join(sorted(map(str, model))[:4]) if isinstance(model, dict) else "no model state"
        raise InputError(f"{option}: {path}: not an MF checkpoint (expected a model state with exactly "
                         f"user_emb.weight and item_emb.weight; found {found or 'an empty state'})")
    tables = []
    for kind, rows in (("user", n_users), ("item", n_items)):
        table = model[f"{kind}_emb.weight"]
        if not isinstance(table, torch.Tensor) or not table.is_floating_point():
            raise InputError(f"{option}: {path}: {kind}_emb.weight is not a float tensor")
        if tuple(table.shape) != (rows, dim):
            raise InputError(f"{option}: {path}: {kind} embeddings of shape {tuple(table.shape)}, this dataset "
                             f"and model need ({rows}, {dim}) (n_{kind}s, embedding_dim)")
        if not torch.isfinite(table).all():
            raise InputError(f"{option}: {path}: {kind}_emb.weight holds non-finite values")
        tables.append(table.float())
    return tables[0], tables[1]
