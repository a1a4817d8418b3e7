"""Compiled (numba) kernels for the evaluator's work on a block of scores: seen-item masking, target
ranks and top-K, one call per block.

Why hand-written: in torch these take several passes, a full `topk` and a dozen small calls per block,
which on CPU cost as much as the scoring product itself. Here each row is masked, ranked and cut in one
parallel loop: the compares are vectorised, and top-K visits only the few chunks that can hold a top
item. Rows run in parallel on as many threads as torch uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch
from numba import prange

CHUNK = 64  # items per chunk for top-K pruning: one chunk maximum per 64 scores


def rank_rows(
    scores: np.ndarray,
    first: int,
    seen_offsets: np.ndarray,
    seen_items: np.ndarray,
    target_offsets: np.ndarray,
    target_items: np.ndarray,
    ranks: np.ndarray,
    top: np.ndarray,
) -> None:
    """Rows `first`.. of an evaluation set, scored in `scores` [B, n_items] (masked in place).

    Row r's seen items (CSR `seen_offsets`/`seen_items`) are set to -inf; each of its targets t gets
    `ranks[t]` = 1 + items scored higher + items scored equal with a smaller index (0 if its score is
    NaN); `top[r]` = its best `top.shape[1]` items, best first, equal scores in index order.
    """
    csr = (seen_offsets, seen_items, target_offsets, target_items)
    _on_torch_threads(_rank_rows, scores, first, *csr, ranks, top)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[rows, k] best item indices per row, best first; equal scores in index order (a stable sort)."""
    out = np.empty((scores.shape[0], k), np.int64)
    _on_torch_threads(_top_k, scores, out)
    return out


def _on_torch_threads(kernel: Callable[..., None], *args: Any) -> None:
    """Run `kernel` on as many threads as torch uses, and leave torch's count as it was.

    Why: numba's OpenMP layer shares the process's OpenMP runtime, and starting its threads resets the
    runtime's thread count to all cores, which torch then reads back: a run limited to one thread
    (`train.threads=1`, beside other jobs) would silently train on every core after its first evaluation.
    """
    n = torch.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


@numba.njit(parallel=True, cache=True, boundscheck=False)
def _rank_rows(scores, first, seen_offsets, seen_items, target_offsets, target_items, ranks, top):
    n = scores.shape[1]
    for b in prange(scores.shape[0]):
        r = first + b
        row = scores[b]
        for p in range(seen_offsets[r], seen_offsets[r + 1]):
            row[seen_items[p]] = -np.inf
        for t in range(target_offsets[r], target_offsets[r + 1]):
            item = target_items[t]
            target = row[item]
            if target != target:  # NaN
                ranks[t] = 0
                continue
            ahead = 0
            for j in range(item):
                ahead += row[j] >= target
            for j in range(item + 1, n):
                ahead += row[j] > target
            ranks[t] = ahead + 1
        _top_k_row(row, top[r])


@numba.njit(parallel=True, cache=True, boundscheck=False)
def _top_k(scores, out):
    for r in prange(scores.shape[0]):
        _top_k_row(scores[r], out[r])


@numba.njit(cache=True, boundscheck=False)
def _top_k_row(row, out):
    """A top-k item scores at least the k-th largest chunk maximum (k chunks hold an item that high), so
    only chunks whose maximum reaches it are scanned, and only their items that reach it are sorted in."""
    n, k = len(row), len(out)
    n_chunks = (n + CHUNK - 1) // CHUNK
    maxima = np.empty(n_chunks, np.float32)
    _chunk_maxima(row, maxima)
    floor = np.partition(maxima, n_chunks - k)[n_chunks - k] if n_chunks > k else -np.inf
    best = np.empty(k, np.float32)
    filled = 0
    for c in range(n_chunks):
        if maxima[c] < floor:
            continue
        for j in range(c * CHUNK, min(c * CHUNK + CHUNK, n)):
            s = row[j]
            if s < floor:
                continue
            if filled < k:
                p = filled
                filled += 1
            elif s > best[k - 1]:
                p = k - 1
            else:
                continue
            while p > 0 and best[p - 1] < s:  # insert after equal scores: index order among ties
                best[p] = best[p - 1]
                out[p] = out[p - 1]
                p -= 1
            best[p] = s
            out[p] = j


# nnan/nsz let the maxima vectorise; NaN scores are reported by the rank loop above.
@numba.njit(cache=True, boundscheck=False, fastmath={"nnan", "nsz"})
def _chunk_maxima(row, maxima):
    n = len(row)
    for c in range(len(maxima)):
        m = row[c * CHUNK]
        for j in range(c * CHUNK + 1, min(c * CHUNK + CHUNK, n)):
            m = max(m, row[j])
        maxima[c] = m
