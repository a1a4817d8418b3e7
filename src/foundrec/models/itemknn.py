"""Item-based k-nearest neighbours: cosine similarity of item co-occurrence, with shrinkage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch

from foundrec.data.sequences import Sequences
from foundrec.models.base import Recommender, UserBatch


class ItemKNN(Recommender):
    """sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink), top `neighbours` per item kept.

    A user's score for item j sums sim(i, j) over the items i in their history (sparse products in scipy,
    so the item-item matrix never becomes dense).
    """

    name = "itemknn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        self.neighbours = neighbours
        self.shrink = shrink

    def fit(self, train: Sequences, n_items: int) -> Self:
        rows = train.row_ids()
        x = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, train.items)), shape=(len(train), n_items)
        )
        x.sum_duplicates()
        x.data[:] = 1.0  # repeats count once
        co = (x.T @ x).tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        coo.data = coo.data / (norms[coo.row] * norms[coo.col] + self.shrink)
        self.sim_ = _top_per_row(coo.tocsr(), self.neighbours)
        self.n_items_ = n_items
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        rows = batch.row_ids().numpy()
        h = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, batch.items.numpy())),
            shape=(len(batch), self.n_items_),
        )
        h.data[:] = 1.0
        return torch.from_numpy(np.asarray((h @ self.sim_).todense(), dtype=np.float32))

    def n_parameters(self) -> int:
        return int(self.sim_.nnz)

    def _meta(self) -> dict[str, Any]:
        return {"n_items": self.n_items_}

    def _save_state(self, path: Path) -> None:
        sp.save_npz(path / "similarity.npz", self.sim_)

    def _load_state(self, path: Path, meta: dict[str, Any]) -> None:
        self.sim_ = sp.load_npz(path / "similarity.npz").tocsr()
        self.n_items_ = meta["n_items"]


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (each item's nearest neighbours)."""
    m.sort_indices()
    lengths = np.diff(m.indptr)
    if lengths.max(initial=0) <= k:
        return m
    keep = np.zeros(m.nnz, dtype=bool)
    for r in np.flatnonzero(lengths):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            keep[lo + np.argpartition(-m.data[lo:hi], k)[:k]] = True
    m.data = np.where(keep, m.data, 0).astype(np.float32)
    m.eliminate_zeros()
    return m
