"""Top-K recommendations and exported representations of a trained model (``dglmm recommend``, ``dglmm
export``, :meth:`dglmm.Run.recommend`, :meth:`dglmm.Run.export`).

Recommendations rank exactly what the full-ranking evaluator ranks (:mod:`dglmm.train.evaluate`): the model's
``score`` of every item for a chunk of users, training items set to ``-inf`` and the top-K taken with the same
tie rule (:func:`~dglmm.train.evaluate.rank_topk`: lower item id first).  Users are processed in chunks, so the
memory is that of one ``[chunk, n_items]`` score block, never of all users at once.  Items whose score was
masked never appear: a user with fewer than K unseen items gets fewer rows.

Cold items (no training interaction) are ranked like every other item.  Their score carries information only
when the model builds item representations from content: VBPR, LATTICE, MICRO, TMFUN, CAmgr and SLIF-MR
(item features) and KGAT (knowledge graph).  For MF, LightGCN and NGCF a cold item's vector is its
initial ID embedding, moved only by L2 and by being drawn as a negative.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dglmm.data.ids import IdMap
from dglmm.errors import InputError
from dglmm.io import write_bytes, write_chunks, write_json, write_text
from dglmm.train.evaluate import InteractionIndex, rank_topk

COLD_ITEM_MODELS = ("vbpr", "lattice", "micro", "freedom", "tmfun", "mgcn", "camgr", "slifmr", "kgat")
FORMATS = ("csv", "jsonl")


@dataclass
class TopK:
    """The top-K of one chunk of users (dense ids): ``items``/``scores`` ``[B, k]``; ``kept`` is False where
    an item was masked (a user with fewer than K unmasked items)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    kept: np.ndarray


def check_k(k: int, n_items: int) -> int:
    """``k`` as an int between 1 and the catalogue size, else an :class:`InputError`."""
    if int(k) != k or k < 1:
        raise InputError(f"k must be a positive integer, got {k}")
    if k > n_items:
        raise InputError(f"k={k} is larger than the catalogue ({n_items} items)")
    return int(k)


@torch.no_grad()
def topk_chunks(score_fn: Callable[[torch.Tensor], torch.Tensor], users: np.ndarray, k: int,
                exclude: InteractionIndex | None, chunk_size: int = 1024,
                device: torch.device | str = "cpu") -> Iterator[TopK]:
    """The top-``k`` items of ``users`` chunk by chunk, ``exclude``'s items masked (None: nothing masked).

    ``score_fn`` maps user ids to ``[B, n_items]`` scores, as for
    :func:`~dglmm.train.evaluate.evaluate_full_ranking`; ranking is :func:`~dglmm.train.evaluate.rank_topk`.
    """
    users = np.asarray(users, dtype=np.int64)
    for start in range(0, len(users), chunk_size):
        chunk = users[start:start + chunk_size]
        scores = score_fn(torch.from_numpy(chunk).to(device))
        rows = cols = None
        if exclude is not None:
            rows, cols = (torch.from_numpy(a).to(scores.device) for a in exclude.coo(chunk))
        idx = rank_topk(scores, rows, cols, k)
        kept = torch.ones_like(idx, dtype=torch.bool)
        if exclude is not None:
            kept = ~exclude.dense(chunk, scores.device).gather(1, idx)
        yield TopK(chunk, idx.cpu().numpy(), scores.gather(1, idx).float().cpu().numpy(), kept.cpu().numpy())


def topk_frame(top: TopK, users: IdMap, items: IdMap) -> pd.DataFrame:
    """Rows ``user, rank, item, score`` (original ids, rank from 1) of one chunk."""
    n_rows, k = top.items.shape
    user_index = np.repeat(np.arange(n_rows), k).reshape(n_rows, k)[top.kept]
    return pd.DataFrame({"user": users.decode(top.users[user_index]),
                         "rank": np.broadcast_to(np.arange(1, k + 1), (n_rows, k))[top.kept],
                         "item": items.decode(top.items[top.kept]), "score": top.scores[top.kept]})


def _jsonl(top: TopK, users: IdMap, items: IdMap) -> str:
    """One JSON object ``{"user", "items", "scores"}`` per user of the chunk."""
    names, labels = users.decode(top.users).tolist(), items.decode(top.items.ravel()).reshape(top.items.shape)
    lines = (json.dumps({"user": name, "items": row[keep].tolist(), "scores": score[keep].tolist()})
             for name, row, score, keep in zip(names, labels, top.scores, top.kept, strict=True))
    return "".join(line + "\n" for line in lines)


def output_format(path: Path | None, fmt: str | None) -> str:
    """``fmt`` or, from the file name, ``jsonl`` for ``.jsonl``/``.json`` and ``csv`` otherwise."""
    if fmt is None:
        fmt = "jsonl" if path is not None and path.suffix in (".jsonl", ".json") else "csv"
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def encode_chunks(chunks: Iterator[TopK], users: IdMap, items: IdMap, fmt: str) -> Iterator[bytes]:
    """The bytes of a CSV (with header) or JSON-lines file of the chunks."""
    for number, top in enumerate(chunks):
        if fmt == "jsonl":
            yield _jsonl(top, users, items).encode()
        else:
            yield topk_frame(top, users, items).to_csv(index=False, header=number == 0,
                                                       float_format="%.6g").encode()


def check_writable(path: Path, directory: bool = False) -> None:
    """An :class:`InputError` now, before any work, when ``path`` (a file, or a folder) cannot be written."""
    folder = path if directory else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dglmm-write-test-{id(path)}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot write here ({exc.strerror or type(exc).__name__})") from None
    if not directory and path.is_dir():
        raise InputError(f"{path}: is a folder; name an output file")


def write_recommendations(path: Path, chunks: Iterator[TopK], users: IdMap, items: IdMap, fmt: str) -> None:
    """Stream the chunks into ``path`` atomically (the file appears complete or not at all)."""
    try:
        write_chunks(path, encode_chunks(chunks, users, items, fmt))
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


EXPORT_FILES = ("user_embeddings.npy", "item_embeddings.npy", "user_ids.txt", "item_ids.txt", "export.json")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def export_vectors(out: Path, user: np.ndarray, item: np.ndarray, users: IdMap, items: IdMap,
                   manifest: dict) -> Path:
    """Write the five :data:`EXPORT_FILES` into ``out``: float32 ``[n, d]`` vectors (row ``r`` is the user/item
    on line ``r`` of the id file), the original ids one per line, and ``export.json`` (``manifest``)."""
    check_writable(out, directory=True)
    try:
        write_bytes(out / "user_embeddings.npy", _npy(user.astype(np.float32)))
        write_bytes(out / "item_embeddings.npy", _npy(item.astype(np.float32)))
        write_text(out / "user_ids.txt", "".join(f"{u}\n" for u in users.all()))
        write_text(out / "item_ids.txt", "".join(f"{i}\n" for i in items.all()))
        write_json(out / "export.json", manifest)
    except OSError as exc:
        raise InputError(f"{out}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return out
