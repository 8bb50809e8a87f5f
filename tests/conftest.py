"""Tiny on-disk datasets in every supported layout, written into ``tmp_path`` (data reader tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

MMREC_INTER = """userID\titemID\trating\ttimestamp\tx_label
0\t0\t5\t1\t0
0\t1\t4\t2\t0
0\t2\t3\t3\t1
0\t3\t3\t4\t2
1\t1\t5\t1\t0
1\t2\t5\t2\t0
1\t3\t5\t3\t2
2\t0\t1\t1\t0
2\t4\t1\t1\t1
"""

LATTICE = {"train.json": {"0": [0, 1], "1": [1, 2], "2": [0]},
           "val.json": {"0": [2], "2": [4]},
           "test.json": {"0": [3], "1": [3], "2": []}}

KGAT = {"train.txt": "0 0 1 2 3\n1 1 2\n2 4\n3\n",
        "test.txt": "0 5\n1 3\n2 0\n",
        "kg_final.txt": "0 0 6\n1 0 6\n2 1 7\n6 2 7\n"}

# Columns deliberately out of the usual order; user tokens "1", "2", "10" sort numerically.
RECBOLE = {
    "tiny.inter": "item_id:token\trating:float\tuser_id:token\ttimestamp:float\n"
                  + "".join(f"{i}\t{r}\t{u}\t{t}\n" for u, i, r, t in [
                      (1, 10, 5, 1), (1, 20, 4, 2), (1, 30, 3, 3), (1, 40, 2, 4), (1, 50, 1, 5),
                      (2, 20, 5, 3), (2, 30, 4, 2), (2, 40, 5, 1),
                      (10, 10, 2, 9), (10, 30, 4, 8), (10, 50, 5, 7), (10, 60, 3, 6)]),
    "tiny.item": "item_id:token\tmovie_title:token_seq\tyear:token\n"
                 "10\tAlpha\t1990\n20\tBeta\t1991\n30\tGamma\t1992\n40\tDelta\t\n70\tUnused\t2000\n",
    "tiny.link": "item_id:token\tentity_id:token\n10\tm.a\n20\tm.b\n",
    "tiny.kg": "head_id:token\trelation_id:token\ttail_id:token\n"
               "m.a\tfilm.genre\tm.x\nm.b\tfilm.genre\tm.x\nm.c\tfilm.actor\tm.a\n",
}


def write_files(directory: Path, files: dict[str, object]) -> Path:
    """Write ``{name: text | json-able | np.ndarray}`` into ``directory`` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, np.ndarray):
            np.save(directory / name, content)
        elif isinstance(content, str):
            (directory / name).write_text(content, encoding="utf-8")
        else:
            (directory / name).write_text(json.dumps(content), encoding="utf-8")
    return directory


@pytest.fixture
def mmrec_dir(tmp_path: Path) -> Path:
    """Users 0-2, items 0-4 in interactions, float16 features for 6 items (item 5 is cold)."""
    rng = np.random.default_rng(0)
    return write_files(tmp_path / "toy", {
        "toy.inter": MMREC_INTER,
        "image_feat.npy": rng.standard_normal((6, 4)).astype(np.float16),
        "text_feat.npy": rng.standard_normal((6, 3)).astype(np.float32)})


@pytest.fixture
def lattice_dir(tmp_path: Path) -> Path:
    return write_files(tmp_path / "lat", dict(LATTICE))


@pytest.fixture
def kgat_dir(tmp_path: Path) -> Path:
    return write_files(tmp_path / "kg", dict(KGAT))


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    return write_files(tmp_path / "tiny", dict(RECBOLE))


@pytest.fixture(autouse=True, scope="session")
def _graph_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Graphs built by the tests are cached in a temporary folder, never in the user's ~/.cache."""
    import os

    previous = os.environ.get("DGLMM_CACHE")
    os.environ["DGLMM_CACHE"] = str(tmp_path_factory.mktemp("graph-cache"))
    yield
    if previous is None:
        os.environ.pop("DGLMM_CACHE", None)
    else:
        os.environ["DGLMM_CACHE"] = previous
