"""The ANN index keeps recall@10 against exact search at or above 0.98 on a Beauty-sized catalogue."""

from __future__ import annotations

import numpy as np

from foundrec.serve.index import ItemIndex, recall_at_k


def test_hnsw_recall_on_a_beauty_sized_catalogue() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12_101, 64)).astype(np.float32)  # Beauty's items, SASRec base width
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # cosine models serve unit vectors
    queries = rng.standard_normal((200, 64)).astype(np.float32)
    hnsw = ItemIndex(vectors, exact=False)
    assert hnsw.kind == "hnsw"
    assert recall_at_k(hnsw, vectors, queries, k=10) >= 0.98
    exact = ItemIndex(vectors)
    assert exact.kind == "flat" and recall_at_k(exact, vectors, queries, k=10) == 1.0
