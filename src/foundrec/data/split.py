"""Train / validation / test splits: leave-one-out and global temporal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundrec.data.prepare import Interactions
from foundrec.data.sequences import Sequences
from foundrec.errors import DataError


@dataclass(frozen=True)
class EvalSet:
    """Users to evaluate, the history each one's model input holds, and the items to find."""

    history: Sequences  # row r: input of user history.rows[r], time ordered
    targets: Sequences  # row r: items that user interacts with next (one for leave-one-out)

    @property
    def users(self) -> np.ndarray:
        return self.history.rows

    def __len__(self) -> int:
        return len(self.history)


@dataclass(frozen=True)
class Split:
    train: Sequences  # every user's training items (rows may be empty)
    valid: EvalSet
    test: EvalSet
    n_users: int
    n_items: int
    protocol: str

    def item_counts(self) -> np.ndarray:
        """Training interactions per item: the popularity that defines the long tail."""
        return np.bincount(self.train.items, minlength=self.n_items)

    def time_window(self) -> dict[str, float] | None:
        """The last event time a model trained on this split learns from (train) and is selected on
        (validation); fine-tuning checks it against a task's test period. None without timestamps."""
        parts = (self.train, self.valid.history, self.valid.targets)
        if any(p.timestamps is None for p in parts):
            return None
        last = [float(p.timestamps.max(initial=-np.inf)) for p in parts]
        return {"train_last_timestamp": last[0], "valid_last_timestamp": max(last)}


def leave_one_out(data: Interactions) -> Split:
    """Last item is the test target, second-to-last the validation target; users with < 3 items only train."""
    seqs = data.sequences
    lengths = seqs.lengths
    evaluable = lengths >= 3
    train = seqs.truncate(np.where(evaluable, lengths - 2, lengths))
    ev = seqs.select(evaluable)
    ev_len = ev.lengths
    valid = EvalSet(ev.truncate(ev_len - 2), _pick(ev, ev_len - 2))
    test = EvalSet(ev.truncate(ev_len - 1), _pick(ev, ev_len - 1))
    protocol = "leave-one-out: last item test, second-to-last validation, users with >= 3 items evaluated"
    return Split(train, valid, test, data.n_users, data.n_items, protocol)


def temporal(data: Interactions, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global time cut: events before t1 train, [t1, t2) validation, from t2 on test.

    A user is evaluated in a period when they have at least one earlier event (the model input) and one
    event in the period (the targets, deduplicated, in time order).
    """
    seqs = data.sequences
    if seqs.timestamps is None:
        raise DataError("the temporal split needs timestamps; map a timestamp column or use --split loo")
    t1, t2 = np.quantile(seqs.timestamps, [1 - valid_fraction - test_fraction, 1 - test_fraction])
    train = seqs.filter_items(seqs.timestamps < t1)
    valid = _period(seqs, seqs.timestamps < t1, (seqs.timestamps >= t1) & (seqs.timestamps < t2))
    test = _period(seqs, seqs.timestamps < t2, seqs.timestamps >= t2)
    protocol = (
        f"temporal: global time split {1 - valid_fraction - test_fraction:.0%}/{valid_fraction:.0%}/"
        f"{test_fraction:.0%} by event time; history = all earlier events"
    )
    return Split(train, valid, test, data.n_users, data.n_items, protocol)


def make_split(
    data: Interactions,
    method: str,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    new_items: float = 0.0,
) -> Split:
    if method == "loo":
        split = leave_one_out(data)
    elif method == "temporal":
        split = temporal(data, valid_fraction, test_fraction)
    else:
        raise DataError(f"unknown split {method!r}; use loo or temporal")
    return hold_out_items(split, new_items) if new_items > 0 else split


def hold_out_items(split: Split, share: float, seed: int = 0) -> Split:
    """Remove a random `share` of the items from training: a cold-start check for new items.

    Their training interactions are dropped, so no model has seen them; validation and test keep them as
    targets and in histories, as a shop's newly listed items appear. The draw is seeded (the same items
    for every model and training seed) and uniform over items, so mostly long-tail items.
    """
    if not 0 < share < 1:
        raise DataError(f"split.new_items must be between 0 and 1, got {share}")
    rng = np.random.default_rng(seed)
    held = np.zeros(split.n_items, dtype=bool)
    held[rng.choice(split.n_items, size=max(1, round(share * split.n_items)), replace=False)] = True
    train = split.train.filter_items(~held[split.train.items])
    protocol = f"{split.protocol}; {share:.0%} of items held out of training (new items, seed {seed})"
    return Split(train, split.valid, split.test, split.n_users, split.n_items, protocol)


def _pick(seqs: Sequences, position: np.ndarray) -> Sequences:
    """One item per row, at `position` within the row."""
    index = seqs.offsets[:-1] + position
    return Sequences(
        offsets=np.arange(len(seqs) + 1, dtype=np.int64),
        items=seqs.items[index],
        rows=seqs.rows,
        timestamps=None if seqs.timestamps is None else seqs.timestamps[index],
    )


def _period(seqs: Sequences, before: np.ndarray, inside: np.ndarray) -> EvalSet:
    history = seqs.filter_items(before)
    targets = seqs.filter_items(inside)
    users = (history.lengths > 0) & (targets.lengths > 0)
    targets = _dedup_rows(targets.select(users))
    return EvalSet(history.select(users), targets)


def _dedup_rows(seqs: Sequences) -> Sequences:
    """Drop repeats of an item within a row, keeping its first occurrence."""
    row_ids = seqs.row_ids()
    key = row_ids * (int(seqs.items.max(initial=0)) + 1) + seqs.items
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(key), dtype=bool)
    keep[first] = True
    return seqs.filter_items(keep)
