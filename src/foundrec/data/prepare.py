"""Clean a raw interaction frame and turn it into id vocabularies plus time-ordered CSR sequences."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from foundrec.data.sequences import Sequences
from foundrec.errors import DataError


@dataclass
class Vocab:
    """Raw id <-> contiguous index; saved as one raw id per line, line number = index."""

    ids: list[str]
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, raw: str) -> int | None:
        if self._index is None:
            self._index = {raw_id: i for i, raw_id in enumerate(self.ids)}
        return self._index.get(raw)

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{raw}\n" for raw in self.ids))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(path.read_text().split("\n")[:-1])  # not splitlines(): ids may hold \x85, \u2028


@dataclass
class Interactions:
    """A cleaned log: vocabularies and each user's items in time order (row r is user r)."""

    users: Vocab
    items: Vocab
    sequences: Sequences
    ratings: np.ndarray | None = None  # float64 [nnz], aligned with sequences.items

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def stats(self) -> dict[str, float]:
        lengths = self.sequences.lengths
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.sequences.nnz,
            "density": self.sequences.nnz / max(1, self.n_users * self.n_items),
            "length_min": int(lengths.min()),
            "length_mean": float(lengths.mean()),
            "length_median": float(np.median(lengths)),
            "length_p90": float(np.percentile(lengths, 90)),
            "length_max": int(lengths.max()),
        }


def clean(
    frame: pl.DataFrame, dedup: str = "exact", kcore: int = 0, min_rating: float | None = None
) -> pl.DataFrame:
    """Rating filter, deduplication and iterated k-core; row order is kept."""
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise DataError(
                "data.min_rating is set but the data has no rating column; map one with --rating-col"
            )
        frame = frame.filter(pl.col("rating") >= min_rating)
    time_key = ["timestamp"] if "timestamp" in frame.columns else []
    if dedup == "exact":
        frame = frame.unique(subset=["user", "item", *time_key], keep="first", maintain_order=True)
    elif dedup in ("first", "last"):
        ordered = frame.sort(["user", *time_key, "line"], maintain_order=True)
        frame = ordered.unique(subset=["user", "item"], keep=dedup, maintain_order=True).sort("line")
    if kcore > 0:
        frame = kcore_filter(frame, kcore)
    if frame.height == 0:
        raise DataError("no interactions left after cleaning; relax data.kcore or data.min_rating")
    return frame


def kcore_filter(frame: pl.DataFrame, k: int) -> pl.DataFrame:
    """Drop users and items with fewer than k interactions until none are left to drop."""
    while True:
        before = frame.height
        frame = frame.filter(pl.len().over("user") >= k).filter(pl.len().over("item") >= k)
        if frame.height == before:
            return frame


def build_interactions(frame: pl.DataFrame) -> Interactions:
    """Index ids in order of first appearance and sort each user's events by time (stable by line)."""
    user_ids = frame["user"].unique(maintain_order=True)
    item_ids = frame["item"].unique(maintain_order=True)
    user_index = pl.DataFrame({"user": user_ids, "_u": pl.int_range(0, len(user_ids), eager=True)})
    item_index = pl.DataFrame({"item": item_ids, "_i": pl.int_range(0, len(item_ids), eager=True)})
    time_key = ["timestamp"] if "timestamp" in frame.columns else []
    indexed = (
        frame.join(user_index, on="user", how="left")
        .join(item_index, on="item", how="left")
        .sort(["_u", *time_key, "line"])
    )
    counts = np.bincount(indexed["_u"].to_numpy(), minlength=len(user_ids))
    sequences = Sequences(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=indexed["_i"].to_numpy().astype(np.int64),
        rows=np.arange(len(user_ids), dtype=np.int64),
        timestamps=indexed["timestamp"].to_numpy() if time_key else None,
    )
    ratings = indexed["rating"].to_numpy() if "rating" in indexed.columns else None
    return Interactions(Vocab(user_ids.to_list()), Vocab(item_ids.to_list()), sequences, ratings)
