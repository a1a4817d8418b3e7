"""Labelled task rows (like = rating > 3) for CTR and rating heads, in two protocols, and their batches.

Every interaction is an *event*; events are grouped by user and time ordered (stable: file order on equal
timestamps), so a row's history is simply the events before it in its user's block: nothing from the
future can enter it. A row is the event index of its target.

- temporal (protocol a): global time cut at the 80% / 90% quantiles, as `--split temporal`; every event
  with at least one earlier event of its user is a row; training reads next-item windows of training
  events (each training row a target once per epoch), evaluation the last `max_len` events before a row.
- tallrec (protocol b): rows with 10 earlier events (their like/dislike is input), the last 10,000 by
  time, split 8:1:1 by time; few-shot training sets are drawn from the train part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from foundrec.data.batching import length_grouped_batches, next_item_windows
from foundrec.data.prepare import Interactions
from foundrec.data.sequences import Sequences
from foundrec.errors import DataError

LIKE_THRESHOLD = 3.0  # rating > 3 is a like; 3 counts as a dislike (TALLRec)
PAD_FEEDBACK = 2  # feedback tokens: 0 dislike, 1 like, 2 padding
AGE_EDGES = [18, 25, 35, 45, 50, 56]  # MovieLens 1M's age groups
YEAR_EDGES = [1950, 1960, 1970, 1980, 1990, 1995, 1997]


@dataclass(frozen=True)
class Events:
    """All interactions, grouped by user (CSR `offsets`), time ordered within a user."""

    offsets: np.ndarray  # int64 [n_users + 1]
    users: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n]
    ratings: np.ndarray  # float64 [n]
    timestamps: np.ndarray  # float64 [n]
    n_users: int
    n_items: int

    @property
    def labels(self) -> np.ndarray:
        return (self.ratings > LIKE_THRESHOLD).astype(np.float32)

    @property
    def position(self) -> np.ndarray:
        """Number of earlier events of the same user, [n]."""
        return np.arange(len(self.users)) - self.offsets[self.users]

    def __len__(self) -> int:
        return len(self.users)


def build_events(data: Interactions) -> Events:
    seqs = data.sequences
    if data.ratings is None or seqs.timestamps is None:
        raise DataError("labelled tasks need ratings and timestamps (e.g. --data ml-100k)")
    if not np.array_equal(seqs.rows, np.arange(len(seqs))):
        raise DataError("labelled tasks need one sequence per user in user order")
    return Events(
        seqs.offsets, seqs.row_ids(), seqs.items, data.ratings, seqs.timestamps, data.n_users, data.n_items
    )


@dataclass(frozen=True)
class SideFeatures:
    """Categorical user fields (age group, gender, occupation) and item genres (multi-hot) + year group."""

    user: np.ndarray  # int64 [n_users, 3]
    user_cards: tuple[int, int, int]
    item_year: np.ndarray  # int64 [n_items], 0 = unknown year
    item_genres: np.ndarray  # float32 [n_items, n_genres]

    @property
    def year_card(self) -> int:
        return len(YEAR_EDGES) + 2


def side_features(
    users: pl.DataFrame | None, items: pl.DataFrame | None, user_ids: list[str], item_ids: list[str]
) -> SideFeatures:
    """Side tables aligned with the vocabularies; an id missing from a table gets the 'unknown' values."""
    n_users, n_items = len(user_ids), len(item_ids)
    user = np.zeros((n_users, 3), dtype=np.int64)
    cards = (1, 1, 1)
    if users is not None:
        table = pl.DataFrame({"user": user_ids}).join(users, on="user", how="left")
        age = table["age"].fill_null(-1).to_numpy()
        age_group = np.where(age < 0, 0, 1 + np.digitize(age, AGE_EDGES))
        gender = table["gender"].replace_strict({"M": 1, "F": 2}, default=0).to_numpy()
        jobs = sorted(users["occupation"].drop_nulls().unique().to_list())
        job = table["occupation"].replace_strict({j: i + 1 for i, j in enumerate(jobs)}, default=0).to_numpy()
        user = np.stack([age_group, gender, job], axis=1).astype(np.int64)
        cards = (len(AGE_EDGES) + 2, 3, len(jobs) + 1)
    year = np.zeros(n_items, dtype=np.int64)
    genres = np.zeros((n_items, 1), dtype=np.float32)
    if items is not None:
        table = pl.DataFrame({"item": item_ids}).join(items, on="item", how="left")
        raw_year = table["year"].fill_null(-1).to_numpy()
        year = np.where(raw_year < 0, 0, 1 + np.digitize(raw_year, YEAR_EDGES)).astype(np.int64)
        names = sorted({g for row in items["genres"].to_list() for g in row})
        index = {g: i for i, g in enumerate(names)}
        genres = np.zeros((n_items, len(names)), dtype=np.float32)
        for i, row in enumerate(table["genres"].to_list()):
            for g in row or []:
                genres[i, index[g]] = 1.0
    return SideFeatures(user, cards, year, genres)


@dataclass(frozen=True)
class TaskData:
    """Rows (target event indices) of one protocol; `history` caps how many earlier events a row reads."""

    events: Events
    side: SideFeatures
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    history: int | None  # None: as many as the model reads (max_len)
    protocol: str
    name: str

    @property
    def test_start(self) -> float:
        """The earliest timestamp of a test row: anything a pretrained model saw must come before it."""
        return float(self.events.timestamps[self.test].min())

    def describe(self) -> dict[str, object]:
        ts = self.events.timestamps
        return {
            "name": self.name,
            "description": self.protocol,
            "rows": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)},
            "positive_share": {
                part: float(self.events.labels[rows].mean())
                for part, rows in (("train", self.train), ("valid", self.valid), ("test", self.test))
            },
            "test_start_timestamp": self.test_start,
            "valid_start_timestamp": float(ts[self.valid].min()),
        }


def temporal_task(
    events: Events, side: SideFeatures, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> TaskData:
    """Protocol (a): the cut points of `--split temporal`; rows need at least one earlier event."""
    ts = events.timestamps
    t1, t2 = np.quantile(ts, [1 - valid_fraction - test_fraction, 1 - test_fraction])
    has_history = events.position >= 1
    train = np.flatnonzero(has_history & (ts < t1))
    valid = np.flatnonzero(has_history & (ts >= t1) & (ts < t2))
    test = np.flatnonzero(has_history & (ts >= t2))
    protocol = (
        f"temporal: global time cut {1 - valid_fraction - test_fraction:.0%}/{valid_fraction:.0%}/"
        f"{test_fraction:.0%} of event time; label rating > 3; history = the user's earlier events"
    )
    return TaskData(events, side, train, valid, test, None, protocol, "temporal")


def tallrec_task(events: Events, side: SideFeatures, history: int = 10, last: int = 10_000) -> TaskData:
    """Protocol (b): rows with `history` earlier events, the last `last` by time, split 8:1:1 by time."""
    rows = np.flatnonzero(events.position >= history)
    rows = rows[np.argsort(events.timestamps[rows], kind="stable")][-last:]
    n_train, n_valid = int(len(rows) * 0.8), int(len(rows) * 0.9)
    protocol = (
        f"tallrec: rows with {history} earlier events (their like/dislike as input), the last {last:,} "
        "by time, train/valid/test 8:1:1 by time; label rating > 3"
    )
    return TaskData(
        events, side, rows[:n_train], rows[n_train:n_valid], rows[n_valid:], history, protocol, "tallrec"
    )


def few_shot(rows: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` rows drawn without replacement (seeded), kept in time order."""
    if shots > len(rows):
        raise DataError(f"--shots {shots} is more than the {len(rows)} training rows")
    return np.sort(np.random.default_rng(seed).choice(rows, shots, replace=False))


@dataclass(frozen=True)
class EventWindows:
    """Runs of consecutive events of one user (CSR); the last `n_targets[w]` events of window w are rows."""

    offsets: np.ndarray  # int64 [n + 1]
    events: np.ndarray  # int64 [nnz]
    n_targets: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return len(self.n_targets)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def row_windows(events: Events, rows: np.ndarray, history: int) -> EventWindows:
    """One window per row: its last `history` earlier events, then the row itself."""
    starts = np.maximum(events.offsets[events.users[rows]], rows - history)
    lengths = rows + 1 - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return EventWindows(offsets, flat, np.ones(len(rows), dtype=np.int64))


def next_event_windows(events: Events, rows: np.ndarray, max_len: int) -> EventWindows:
    """Windows of at most max_len + 1 consecutive events, overlapping by one event, as in pretraining.

    Every row is a target exactly once, read after the up to `max_len` events before it in its window
    (fewer at a window's start); `rows` must be each user's events 2..k for some k (protocol a's training
    part), so a window never holds an event after the user's last row.
    """
    counts = np.bincount(events.users[rows], minlength=events.n_users)
    users = np.flatnonzero(counts)
    sizes = counts[users] + 1
    ends = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.repeat(events.offsets[users] - ends[:-1], sizes) + np.arange(ends[-1])
    if not np.array_equal(np.sort(rows), np.delete(flat, ends[:-1])):
        raise DataError("next-event windows need each user's rows to be its events 2..k")
    windows = next_item_windows(Sequences(ends, flat, users), max_len)
    return EventWindows(windows.offsets, windows.items, windows.lengths - 1)


@dataclass(frozen=True)
class LabeledBatch:
    """Histories as right-padded token rows plus the labelled (row, position, candidate) pairs they score."""

    tokens: torch.Tensor  # (B, T) history items, padded with n_items
    feedback: torch.Tensor  # (B, T) 0 dislike, 1 like, 2 padding
    row: torch.Tensor  # (N,) which token row each pair reads
    position: torch.Tensor  # (N,) the hidden state read: the last history event before the target
    users: torch.Tensor  # (N,)
    items: torch.Tensor  # (N,) candidates
    labels: torch.Tensor  # (N,) float 0/1
    ratings: torch.Tensor  # (N,) float


def make_batch(events: Events, windows: EventWindows, index: np.ndarray) -> LabeledBatch:
    """Windows `index` as one batch: tokens = every event but the last, targets = the last n_targets."""
    lengths = windows.lengths[index] - 1  # inputs per window
    width = max(int(lengths.max()), 1)
    pos = np.arange(width)
    starts = windows.offsets[index]
    real = pos[None, :] < lengths[:, None]
    ev = windows.events[np.where(real, starts[:, None] + pos, starts[:, None])]
    tokens = np.where(real, events.items[ev], events.n_items)
    feedback = np.where(real, events.labels[ev].astype(np.int64), PAD_FEEDBACK)
    n_targets = windows.n_targets[index]
    row = np.repeat(np.arange(len(index)), n_targets)
    first = np.repeat(lengths - n_targets, n_targets)  # hidden position that predicts the first target
    position = first + np.arange(len(row)) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
    target = windows.events[starts[row] + position + 1]
    t = torch.from_numpy
    return LabeledBatch(
        t(tokens),
        t(feedback),
        t(row),
        t(position),
        t(events.users[target]),
        t(events.items[target]),
        t(events.labels[target]),
        t(events.ratings[target].astype(np.float32)),
    )


def batches_of(
    windows: EventWindows, batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Window indices in batches of similar length (shuffled when `rng` is given)."""
    if rng is not None:
        return length_grouped_batches(windows.lengths, batch_size, rng)
    order = np.argsort(windows.lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
