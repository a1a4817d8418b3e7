"""Task rows: no future in any history, each training row a target once, TALLRec's split, few-shot draws."""

from __future__ import annotations

import numpy as np
import pytest

from foundrec.data.labeled import (
    PAD_FEEDBACK,
    TaskData,
    few_shot,
    make_batch,
    next_event_windows,
    row_windows,
    tallrec_task,
)
from foundrec.errors import DataError


def test_temporal_periods_follow_time(rated_task: TaskData) -> None:
    ts = rated_task.events.timestamps
    assert ts[rated_task.train].max() < ts[rated_task.valid].min()
    assert ts[rated_task.valid].max() < ts[rated_task.test].min() == rated_task.test_start
    assert (rated_task.events.position[np.r_[rated_task.train, rated_task.valid, rated_task.test]] >= 1).all()


def test_row_histories_hold_only_earlier_events_of_the_same_user(rated_task: TaskData) -> None:
    ev, rows = rated_task.events, rated_task.test
    windows = row_windows(ev, rows, history=7)
    batch = make_batch(ev, windows, np.arange(len(rows)))
    for r, row in enumerate(rows):
        earlier = np.arange(ev.offsets[ev.users[row]], row)[-7:]  # the user's events before this one
        k = len(earlier)
        assert (ev.timestamps[earlier] <= ev.timestamps[row]).all()
        assert batch.tokens[r, :k].tolist() == ev.items[earlier].tolist()
        assert (batch.tokens[r, k:] == ev.n_items).all()
        assert batch.feedback[r, :k].tolist() == ev.labels[earlier].astype(int).tolist()
        assert (batch.feedback[r, k:] == PAD_FEEDBACK).all()
        assert batch.position[r] == k - 1
        assert batch.items[r] == ev.items[row] and batch.labels[r] == ev.labels[row]


def test_training_windows_target_every_training_row_once_and_see_no_later_event(rated_task: TaskData) -> None:
    ev, train = rated_task.events, rated_task.train
    windows = next_event_windows(ev, train, max_len=5)
    assert windows.lengths.max() <= 6
    targets = np.concatenate(
        [
            windows.events[windows.offsets[w + 1] - windows.n_targets[w] : windows.offsets[w + 1]]
            for w in range(len(windows))
        ]
    )
    assert np.array_equal(np.sort(targets), train)
    assert ev.timestamps[windows.events].max() < ev.timestamps[rated_task.valid].min()
    batch = make_batch(ev, windows, np.arange(len(windows)))
    # the pair that predicts event e reads the hidden state right after the event before e
    read = windows.events[windows.offsets[batch.row.numpy()] + batch.position.numpy()]
    assert np.array_equal(ev.users[read], batch.users.numpy())
    assert np.array_equal(np.sort(read + 1), train)


def test_next_event_windows_refuse_rows_with_gaps(rated_task: TaskData) -> None:
    with pytest.raises(DataError):
        next_event_windows(rated_task.events, rated_task.train[::2], max_len=5)


def test_tallrec_rows_have_full_histories_and_split_by_time(rated_task: TaskData) -> None:
    task = tallrec_task(rated_task.events, rated_task.side, history=10, last=500)
    ev = task.events
    rows = np.r_[task.train, task.valid, task.test]
    assert (len(task.train), len(task.valid), len(task.test)) == (400, 50, 50)
    assert (ev.position[rows] >= 10).all()
    ts = ev.timestamps
    assert ts[task.train].max() <= ts[task.valid].min() and ts[task.valid].max() <= ts[task.test].min()
    eligible = np.flatnonzero(ev.position >= 10)
    assert (ts[eligible] <= ts[task.train].min()).sum() >= len(eligible) - 500  # the last 500 by time
    batch = make_batch(ev, row_windows(ev, task.test, 10), np.arange(50))
    assert batch.tokens.shape == (50, 10) and (batch.tokens != ev.n_items).all()


def test_few_shot_draws_are_seeded_subsets() -> None:
    rows = np.arange(100, 900)
    a, b, c = few_shot(rows, 16, 1), few_shot(rows, 16, 1), few_shot(rows, 16, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 16 and np.isin(a, rows).all()
    with pytest.raises(DataError):
        few_shot(rows, 10_000, 0)
