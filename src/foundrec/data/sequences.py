"""Columnar user sequences: one flat item array with CSR offsets, never Python lists of lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """Row r holds items[offsets[r]:offsets[r+1]] in time order; `rows` maps a row to its user index."""

    offsets: np.ndarray  # int64 [n_rows + 1]
    items: np.ndarray  # int64 [nnz]
    rows: np.ndarray  # int64 [n_rows], user index of each row
    timestamps: np.ndarray | None = None  # float64 [nnz]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nnz(self) -> int:
        return int(self.offsets[-1])

    def row(self, r: int) -> np.ndarray:
        return self.items[self.offsets[r] : self.offsets[r + 1]]

    def row_ids(self) -> np.ndarray:
        """Row number of every stored item, [nnz]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def select(self, mask_or_index: np.ndarray) -> Sequences:
        """Rows picked by a boolean mask or an index array, in that order."""
        index = np.flatnonzero(mask_or_index) if mask_or_index.dtype == bool else mask_or_index
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = ends - starts
        take = _ranges(starts, lengths)
        return Sequences(
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            items=self.items[take],
            rows=self.rows[index],
            timestamps=None if self.timestamps is None else self.timestamps[take],
        )

    def truncate(self, keep: np.ndarray) -> Sequences:
        """Each row cut to its first keep[r] items (keep <= length)."""
        take = _ranges(self.offsets[:-1], keep)
        return Sequences(
            offsets=np.concatenate([[0], np.cumsum(keep)]).astype(np.int64),
            items=self.items[take],
            rows=self.rows,
            timestamps=None if self.timestamps is None else self.timestamps[take],
        )

    def filter_items(self, keep: np.ndarray) -> Sequences:
        """Keep the stored items where `keep` ([nnz] bool) is true; empty rows stay."""
        counts = np.bincount(self.row_ids()[keep], minlength=len(self))
        return Sequences(
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            items=self.items[keep],
            rows=self.rows,
            timestamps=None if self.timestamps is None else self.timestamps[keep],
        )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    step = np.ones(total, dtype=np.int64)
    nonempty = lengths > 0
    first_pos = (ends - lengths)[nonempty]
    prev_end = np.concatenate([[0], (starts + lengths)[nonempty][:-1]])
    step[first_pos] = starts[nonempty] - prev_end + 1
    step[0] = starts[nonempty][0]
    return np.cumsum(step)
