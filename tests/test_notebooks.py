"""Every notebook runs on small synthetic data (so none rots), and none is committed with outputs."""

import json
import os
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Injected after the cell tagged "parameters" (the papermill convention): small sizes, a temporary run folder.
SMALL = """DATASET = 'synthetic'
SYNTHETIC = {'n_users': 120, 'n_items': 150, 'interactions_per_user': 8, 'n_clusters': 4,
             'modality_dims': {'image': 16, 'text': 8}}
TRAIN = ['train.progress=false', 'train.epochs=2', 'train.batch_size=256', 'model.cl_max_items=64']
RUN_DIR = RUN_DIR_VALUE
import dglmm
print('package:', dglmm.__file__)
"""


# What each notebook must print on the small data (beside the package line and its run's best.pt).
MARKERS = {"explore.ipynb": ("mean attention on image", "recall@20"),
           "slifmr_correlate.ipynb": ("recall@20", "share KG attribute", "in kNN image", "version 1"),
           "camgr_purification.ipynb": ("recall@20", "histogram evenness"),
           "tmfun_attention.ipynb": ("recall@20", "mean attention on image", "mean share of the attended top-20")}


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs") == [] for c in code), f"{path.name}: clear the outputs before committing"
    assert all(c.get("execution_count") is None for c in code), f"{path.name}: execution counts committed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_on_small_synthetic_data(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged, f"{path.name}: no cell tagged 'parameters'"
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
        SMALL.replace("RUN_DIR_VALUE", repr(str(tmp_path / "run")))))
    # the kernel is the running interpreter's python3 and imports this checkout's package
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("DGLMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"package: {ROOT / 'dglmm' / '__init__.py'}" in text      # this checkout, not an installed copy
    assert all(marker in text for marker in MARKERS.get(path.name, ("recall@20",)))
    assert list((tmp_path / "run").glob("*/seed0/best.pt"))             # dglmm.fit(..., out=RUN_DIR)
