"""Next-item training windows and length-grouped batches, so compute follows real events, not padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from foundrec.data.sequences import Sequences


@dataclass(frozen=True)
class Windows:
    """Training windows of at most max_len + 1 items (CSR): inputs w[:-1], next-item targets w[1:]."""

    offsets: np.ndarray  # int64 [n + 1]
    items: np.ndarray  # int64 [nnz]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def next_item_windows(train: Sequences, max_len: int) -> Windows:
    """Cut every history from its end into windows overlapping by one item.

    Every training interaction except each history's first is a target exactly once per epoch, also in
    histories longer than max_len (SASRec's loader keeps only the last window and drops the rest).
    """
    lengths = train.lengths
    keep = lengths >= 2
    starts_all, ends_all = [], []
    ends = train.offsets[1:][keep].copy()
    firsts = train.offsets[:-1][keep]
    while len(ends):
        starts = np.maximum(ends - (max_len + 1), firsts)
        starts_all.append(starts)
        ends_all.append(ends)
        more = starts > firsts
        ends, firsts = starts[more] + 1, firsts[more]
    if not starts_all:
        return Windows(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    starts, ends = np.concatenate(starts_all), np.concatenate(ends_all)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    sizes = ends - starts
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    gather = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
    return Windows(offsets, train.items[gather])


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of window indices with similar lengths, in random order; random within equal lengths."""
    shuffled = rng.permutation(len(lengths))
    by_length = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_right(
    items: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor, max_len: int, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last max_len items of the chosen CSR rows as a right-padded (B, T) tensor, T = longest row.

    Returns (tokens, lengths).
    """
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = torch.clamp(ends - starts, max=max_len)
    width = max(int(lengths.max()), 1) if len(rows) else 1
    pos = torch.arange(width)
    index = (ends - lengths)[:, None] + pos
    if len(items) == 0:
        return torch.full((len(rows), width), pad), lengths
    tokens = torch.where(pos < lengths[:, None], items[index.clamp(max=len(items) - 1)], pad)
    return tokens, lengths
