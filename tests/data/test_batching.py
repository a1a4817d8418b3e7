"""Training windows, length-grouped batches and right padding."""

from __future__ import annotations

import numpy as np
import torch

from foundrec.data.batching import length_grouped_batches, next_item_windows, pad_right
from foundrec.data.sequences import Sequences


def seqs(rows: list[list[int]]) -> Sequences:
    offsets = np.cumsum([0] + [len(r) for r in rows])
    items = np.array([i for r in rows for i in r], dtype=np.int64)
    return Sequences(offsets, items, np.arange(len(rows)))


def test_windows_make_every_interaction_but_the_first_a_target_once() -> None:
    history = list(range(100, 123))  # 23 items, max_len 5: windows of at most 6 items
    windows = next_item_windows(seqs([history, [7], [8, 9]]), max_len=5)
    assert windows.lengths.max() <= 6
    rows = [
        windows.items[a:b].tolist() for a, b in zip(windows.offsets[:-1], windows.offsets[1:], strict=True)
    ]
    targets = sorted(t for w in rows for t in w[1:])
    assert targets == sorted(history[1:] + [9])  # the 1-item history gives no window
    assert history[-6:] in rows and [8, 9] in rows  # windows are cut from the end


def test_batches_cover_all_windows_once_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 51, 1000)
    batches = length_grouped_batches(lengths, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread <= 5  # random batches would spread over ~45
    again = length_grouped_batches(lengths, 64, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_pad_right_keeps_the_last_items_and_pads_to_the_longest_row() -> None:
    s = seqs([[1, 2, 3, 4, 5], [6], [7, 8]])
    tokens, lengths = pad_right(
        torch.from_numpy(s.items), torch.from_numpy(s.offsets), torch.tensor([0, 1, 2]), 3, 99
    )
    assert tokens.tolist() == [[3, 4, 5], [6, 99, 99], [7, 8, 99]]
    assert lengths.tolist() == [3, 1, 2]
    tokens, _ = pad_right(torch.from_numpy(s.items), torch.from_numpy(s.offsets), torch.tensor([1]), 3, 99)
    assert tokens.tolist() == [[6]]  # no padding beyond the longest row of the batch
