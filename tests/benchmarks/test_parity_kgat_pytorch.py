"""benchmarks/parity_kgat_pytorch.py: the conversion to the port's layout, the port edits and the log parsing
on tiny fixtures (no checkout of the port needed); the edits against a real checkout when one is given."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from dglmm.data.dataset import Dataset
from dglmm.data.formats.kgat import read_triples, read_user_lines

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("parity_kgat_pytorch", ROOT / "benchmarks" / "parity_kgat_pytorch.py")
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)


@pytest.fixture
def tiny() -> Dataset:
    """4 users (user 3 has validation and test items but no training item), 5 items, 2 more entities."""
    train = np.array([[0, 4], [0, 1], [1, 0], [2, 2], [2, 3], [2, 0]])
    valid = np.array([[0, 2], [2, 1], [3, 1]])
    test = np.array([[1, 3], [0, 0], [3, 4], [2, 4]])
    kg = np.array([[0, 0, 5], [1, 1, 6], [4, 0, 5], [5, 1, 6]])
    return Dataset(name="tiny", n_users=4, n_items=5, train=train, valid=valid, test=test, n_entities=2, kg=kg,
                   relation_names=["a", "b"])


def pairs_set(pairs: np.ndarray) -> set:
    return {tuple(p) for p in pairs.tolist()}


def test_port_layout_round_trips_the_split(tiny, tmp_path):
    info = parity.write_port_layout(tiny, tmp_path)
    for folder, split in (("select", tiny.valid), ("test", tiny.test)):
        base = tmp_path / folder / parity.DATA_NAME
        train, _ = read_user_lines(base / "train.txt")
        held, _ = read_user_lines(base / "test.txt")
        assert pairs_set(train) == pairs_set(tiny.train)
        # user 3 has no training item: the port would look it up in its training dict, so it is left out
        assert pairs_set(held) == {p for p in pairs_set(split) if p[0] != 3}
        np.testing.assert_array_equal(read_triples(base / "kg_final.txt"), tiny.kg)
        assert info[folder]["users_without_train_dropped"] == 1
        assert info[folder]["port_n_items"] == 5
    assert (tmp_path / "select" / "data" / "train.txt").read_text() == "0 1 4\n1 0\n2 0 2 3\n"
    assert (tmp_path / "select" / "data" / "test.txt").read_text() == "0 2\n2 1\n"


def test_port_layout_reports_the_item_count_the_port_infers(tiny, tmp_path):
    tiny.test = tiny.test[tiny.test[:, 1] != 4]
    tiny.train = tiny.train[tiny.train[:, 1] != 4]
    info = parity.write_port_layout(tiny, tmp_path)
    assert info["test"]["port_n_items"] == 4  # max id + 1 over train and test: item 4 is never ranked there


def fake_port(root: Path) -> None:
    """Files holding exactly the text each edit replaces (as many times as the port has it)."""
    for name, old, _, occurrences, _ in parity.PORT_EDITS:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + f"x = 1\n{old}\n" * occurrences)
    (root / "datasets").mkdir()
    (root / "datasets" / "big.zip").write_text("not copied")


def test_port_edits_apply_to_a_copy_and_say_why(tmp_path):
    fake_port(tmp_path / "src")
    before = {p: p.read_text() for p in (tmp_path / "src").rglob("*.py")}
    lines = parity.apply_port_edits(tmp_path / "src", tmp_path / "copy")
    assert len(lines) == len(parity.PORT_EDITS) and all("(" in line for line in lines)
    assert {p: p.read_text() for p in (tmp_path / "src").rglob("*.py")} == before  # the checkout is untouched
    assert not (tmp_path / "copy" / "datasets").exists()
    for name, old, new, occurrences, _ in parity.PORT_EDITS:
        text = (tmp_path / "copy" / name).read_text()
        assert old not in text and text.count(new) >= occurrences


def test_port_edits_refuse_another_version(tmp_path):
    fake_port(tmp_path / "src")
    name, old = parity.PORT_EDITS[0][:2]
    (tmp_path / "src" / name).write_text("nothing to edit\n")
    with pytest.raises(ValueError, match="expected 1 occurrence"):
        parity.apply_port_edits(tmp_path / "src", tmp_path / "copy")


def test_port_log_and_metrics_parsing(tmp_path):
    log = ("2026 - root - INFO - CF Training: Epoch 0001 Total Iter 0036 | Total Time 3.5s | Iter Mean Loss 0.6\n"
           "2026 - root - INFO - KG Training: Epoch 0001 Total Iter 0184 | Total Time 9.0s | Iter Mean Loss 0.7\n"
           "2026 - root - INFO - CF + KG Training: Epoch 0001 | Total Time 12.8s\n"
           "2026 - root - INFO - CF + KG Training: Epoch 0002 | Total Time 11.0s\n")
    assert parity.port_epoch_seconds(log, "kgat") == [12.8, 11.0]
    assert parity.port_epoch_seconds(log, "mf") == [3.5]
    metrics = tmp_path / "metrics.tsv"
    metrics.write_text("epoch_idx\tprecision@20\trecall@20\tndcg@20\n2\t0.01\t0.05\t0.03\n4\t0.01\t0.07\t0.04\n"
                       "6\t0.01\t0.07\t0.05\n8\t0.01\t0.06\t0.04\n")
    assert parity.read_port_metrics(metrics) == {"best_recall@20": 0.07, "best_epoch": 4, "last_epoch": 8}


def test_table_from_result_files(tmp_path):
    import json
    for side in parity.SIDES:
        for model, recall, secs in (("mf", 0.10, 1.0), ("kgat", 0.08, 20.0)):
            for seed in range(2):
                folder = tmp_path / f"{side}_{model}_seed{seed}"
                folder.mkdir()
                (folder / "result.json").write_text(json.dumps({
                    "side": side, "model": model, "seed": seed, "test": {"recall@20": recall + seed / 100,
                                                                         "ndcg@20": recall / 2},
                    "valid_recall@20": recall, "best_epoch": 4, "epoch_seconds": [secs, secs]}))
                run = folder / "run"
                if side == "port":
                    (run / "trained_model" / "M" / "data" / "cfg").mkdir(parents=True)
                    (run / "trained_model" / "M" / "data" / "cfg" / "metrics.tsv").write_text(
                        f"epoch_idx\trecall@20\n2\t{recall}\n4\t{recall + seed / 10}\n")
                else:
                    (run / "seed0").mkdir(parents=True)
                    (run / "seed0" / "metrics.jsonl").write_text(
                        json.dumps({"epoch": 1}) + "\n" + json.dumps({"epoch": 2, "valid": {"recall@20": recall}})
                        + "\n" + json.dumps({"epoch": 4, "valid": {"recall@20": recall + seed / 10}}) + "\n")
    text = parity.table(tmp_path)
    assert "| port | mf | 0,1 | 0.1050 ± 0.0050 |" in text
    assert "| dglmm | -0.0200 | -0.0100 | 20x |" in text
    curves = parity.curves(tmp_path)
    assert "| side | model | epoch 2 | epoch 4 |" in curves
    assert "| port | kgat | 0.0800 | 0.1300 |" in curves and "| dglmm | mf | 0.1000 | 0.1500 |" in curves


@pytest.mark.skipif(not os.environ.get("KGAT_PYTORCH_DIR"), reason="set KGAT_PYTORCH_DIR to a port checkout")
def test_port_edits_match_a_real_checkout(tmp_path):
    lines = parity.apply_port_edits(Path(os.environ["KGAT_PYTORCH_DIR"]), tmp_path / "copy")
    assert len(lines) == len(parity.PORT_EDITS)
