"""Launched by ``tests/train/test_distributed.py`` under ``torchrun``: train one config data-parallel, then check that
every rank ends with the same parameters and the same derived graphs (LATTICE/MICRO's learned kNN graphs).

    torchrun --standalone --nproc_per_node=2 tests/train/dist_worker.py MODEL OUT_DIR KEY=VALUE ...

Rank 0 writes the run into ``OUT_DIR/run`` and ``OUT_DIR/ranks.json``: per rank, a SHA-256 of every entry of
the model's ``state_dict()`` (parameters and ``extra_state``: edges and weights of the learned graphs).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from dglmm.data.readers import load_dataset
from dglmm.train import distributed
from dglmm.train.run import prepare_run, resolve_model_config


def digest(value: object) -> str:
    """A hash of a tensor or of a nested dict/list of tensors and numbers."""
    h = hashlib.sha256()

    def feed(v: object) -> None:
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(v, dict):
            for key in sorted(v):
                h.update(str(key).encode())
                feed(v[key])
        elif isinstance(v, list | tuple):
            for item in v:
                feed(item)
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.hexdigest()


def main(model: str, out: str, sets: list[str]) -> None:
    context = distributed.init_from_env({"backend": "gloo", "timeout": 60})
    assert context is not None, "run me under torchrun with 2 processes"
    dataset = load_dataset("synthetic")
    config = resolve_model_config(model, dataset.name, [], sets)
    prepared = prepare_run(model, dataset, config, Path(out) / "run")
    prepared.trainer.fit()
    state = prepared.model.state_dict()
    mine = {key: digest(value) for key, value in state.items()}
    learned = [k for k, v in state.items() if k.endswith("_extra_state") and isinstance(v, dict) and "src" in v]
    ranks: list[object] = [None] * context.world_size
    dist.all_gather_object(ranks, mine)
    if context.is_main:
        (Path(out) / "ranks.json").write_text(json.dumps({"ranks": ranks, "learned_graphs": learned}))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
    sys.exit(distributed.leave(0))  # barrier, then os._exit: gloo's destructors can abort at interpreter exit
