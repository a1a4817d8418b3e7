"""Per request: history (bundle, store, request) -> encoder -> ANN candidates -> filters -> top k.

Users with nothing to encode (unknown, no events, no `history`) get the most popular items that pass
the same filters. When filters or exclusions remove so many candidates that fewer than k remain, the
whole allowed catalogue is scored exactly, so a strict filter never returns a short list by accident.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from foundrec.serve.batcher import EncoderBatcher
from foundrec.serve.bundle import Bundle
from foundrec.serve.index import ItemIndex
from foundrec.serve.store import EventStore

HISTORY_EVENTS = 200  # most recent store events read per request
CANDIDATE_MARGIN = 50  # extra ANN candidates beyond k + exclusions, for filters


class UnknownItems(ValueError):
    """Item ids the bundle does not know, with the request field they came from."""

    def __init__(self, field: str, ids: list[str]) -> None:
        self.field, self.ids = field, ids
        super().__init__(f"unknown item ids in {field}: {', '.join(ids[:10])}")


class UnknownAttribute(ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"unknown item attribute {name!r}; known: {', '.join(known) or 'none'}")


@dataclass
class Filters:
    allow_items: list[str] | None = None  # only these may be recommended
    deny_items: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)  # column -> allowed values


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]
    source: str  # "model" or "popular"
    history_size: int


class ServingPipeline:
    """One bundle version: its index and encoder batcher. A reload builds a new one and swaps it in."""

    def __init__(self, bundle: Bundle, window: float = 0.001) -> None:
        self.bundle = bundle
        self.index = ItemIndex(bundle.item_vectors)
        self.batcher = EncoderBatcher(bundle, self.index, window=window)
        self.popular = np.argsort(-bundle.popularity, kind="stable")
        self.in_flight = 0  # requests between their start and their answer, for a reload to wait on

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        """Wait for the requests already running on this version, then stop its encoder worker."""
        while self.in_flight:
            await asyncio.sleep(0.005)
        await self.batcher.stop()

    @property
    def version(self) -> str:
        return self.bundle.version

    def item_indices(self, ids: list[str], field: str, strict: bool = True) -> np.ndarray:
        """Vocabulary indices of raw ids; unknown ids raise when strict, are dropped otherwise."""
        found = [self.bundle.items.index(i) for i in ids]
        missing = [i for i, f in zip(ids, found, strict=True) if f is None]
        if missing and strict:
            raise UnknownItems(field, missing)
        return np.array([f for f in found if f is not None], dtype=np.int64)

    async def recommend(
        self,
        store: EventStore,
        user_id: str | None,
        k: int,
        exclude_seen: bool = True,
        exclude_items: list[str] | None = None,
        filters: Filters | None = None,
        history: list[str] | None = None,
    ) -> Recommendation:
        """Top k for a user (store history, events included) or an anonymous `history`.

        Counted in `in_flight` so a reload never stops the encoder under a running request.
        """
        self.in_flight += 1
        try:
            return await self._recommend(store, user_id, k, exclude_seen, exclude_items, filters, history)
        finally:
            self.in_flight -= 1

    async def _recommend(
        self,
        store: EventStore,
        user_id: str | None,
        k: int,
        exclude_seen: bool,
        exclude_items: list[str] | None,
        filters: Filters | None,
        history: list[str] | None,
    ) -> Recommendation:
        user = self.bundle.users.index(user_id) if user_id is not None else None
        parts = [self.item_indices(history or [], "history")]
        if user_id is not None:
            events = await store.recent(user_id, HISTORY_EVENTS)
            # Events were checked against the bundle that accepted them; a newer bundle may lack some.
            parts.insert(0, self.item_indices([e.item_id for e in events], "events", strict=False))
        if user is not None:
            parts.insert(0, self.bundle.user_history(user))
        seq = np.concatenate(parts)
        blocked = self._blocked(seq if exclude_seen else seq[:0], exclude_items or [], filters)
        n_blocked = int(blocked.sum())
        # Sequence models encode any non-empty history; factor models only their training users.
        if len(seq) > 0 if self.bundle.encodes_history else user is not None:
            n = min(self.index.n_items, k + n_blocked + CANDIDATE_MARGIN)
            scores, items = await self.batcher.search(user or 0, seq, n)
            if n < self.index.n_items and int((~blocked[items[items >= 0]]).sum()) < k:
                scores, items = await self.batcher.search(user or 0, seq, self.index.n_items)
            keep = (items >= 0) & ~blocked[np.maximum(items, 0)]
            return Recommendation(self._ids(items[keep][:k]), scores[keep][:k].tolist(), "model", len(seq))
        items = self.popular[~blocked[self.popular]][:k]
        return Recommendation(
            self._ids(items), self.bundle.popularity[items].astype(float).tolist(), "popular", len(seq)
        )

    def similar(self, item: int, k: int) -> Recommendation:
        """Items whose vectors have the largest inner product with this item's, the item itself left out."""
        scores, items = self.index.search(self.bundle.item_vectors[item : item + 1], k + 1)
        keep = (items[0] >= 0) & (items[0] != item)
        return Recommendation(self._ids(items[0][keep][:k]), scores[0][keep][:k].tolist(), "model", 0)

    def _blocked(self, seen: np.ndarray, exclude: list[str], filters: Filters | None) -> np.ndarray:
        """[n_items] bool: items that must not be recommended."""
        blocked = np.zeros(self.index.n_items, dtype=bool)
        blocked[seen] = True
        blocked[self.item_indices(exclude, "exclude_items", strict=False)] = True
        if filters is None:
            return blocked
        if filters.allow_items is not None:
            allowed = np.zeros_like(blocked)
            allowed[self.item_indices(filters.allow_items, "allow_items", strict=False)] = True
            blocked |= ~allowed
        blocked[self.item_indices(filters.deny_items, "deny_items", strict=False)] = True
        for name, values in filters.attributes.items():
            blocked |= ~self._attribute_mask(name, set(values))
        return blocked

    def _attribute_mask(self, name: str, values: set[str]) -> np.ndarray:
        column = self.bundle.attributes.get(name)
        if column is None:
            raise UnknownAttribute(name, sorted(self.bundle.attributes))

        def matches(v: object) -> bool:
            if isinstance(v, list):
                return any(str(x) in values for x in v)
            return v is not None and str(v) in values

        return np.fromiter((matches(v) for v in column), dtype=bool, count=len(column))

    def _ids(self, items: np.ndarray) -> list[str]:
        return [self.bundle.items.ids[i] for i in items.tolist()]
