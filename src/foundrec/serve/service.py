"""Per request: history (bundle, store, request) -> retrieval -> filters -> CTR ranking -> top k.

Retrieval is the bundle's dot-product model over its FAISS index, or the bundle's fusion over its
members' candidates (serve/scoring.py). With a CTR head in the bundle, the first RANK_POOL allowed
candidates are re-ordered by P(like) and the probability is the score. Users with nothing to score
(unknown, no events, no `history`) get the most popular items that pass the same filters. When filters
or exclusions remove so many candidates that fewer than k remain, the whole allowed catalogue is
searched exactly, so a strict filter never returns a short list by accident; a fusion, which scores only
its members' candidates, fills the rest with the most popular allowed items, unscored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import numpy as np

from foundrec.serve.batcher import MicroBatcher
from foundrec.serve.bundle import Bundle
from foundrec.serve.index import ItemIndex
from foundrec.serve.scoring import (
    CTRRanker,
    DotProductRetriever,
    FusionRetriever,
    Query,
    RankQuery,
    event_feedback,
)
from foundrec.serve.store import EventStore

HISTORY_EVENTS = 200  # most recent store events read per request
CANDIDATE_MARGIN = 50  # extra ANN candidates beyond k + exclusions, for filters
RANK_POOL = 100  # allowed candidates the CTR head re-orders (at least k)


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


class NoItemVectors(ValueError):
    """The bundle's model has no item vectors (a fusion without a dot-product member)."""


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float | None]  # None: filled from popularity after a fusion's candidates ran out
    source: str  # "model" or "popular"
    history_size: int
    ranked_by: str  # "retrieval", "fusion", "ctr" or "popular"


class ServingPipeline:
    """One bundle version: its index and micro-batchers. A reload builds a new one and swaps it in."""

    def __init__(self, bundle: Bundle, window: float = 0.001) -> None:
        self.bundle = bundle
        self.n_items = len(bundle.items)
        self.index = None if bundle.item_vectors is None else ItemIndex(bundle.item_vectors)
        if bundle.fusion is not None:
            retrieve = FusionRetriever(bundle.fusion)
        else:
            assert self.index is not None and bundle.retriever is not None
            retrieve = DotProductRetriever(bundle.retriever, self.index, bundle.max_len)
        self.retrieval = MicroBatcher(retrieve, window)
        self.ranking = None if bundle.ranker is None else MicroBatcher(CTRRanker(bundle.ranker), window)
        self.popular = np.argsort(-bundle.popularity, kind="stable")
        self.in_flight = 0  # requests between their start and their answer, for a reload to wait on

    def start(self) -> None:
        self.retrieval.start()
        if self.ranking is not None:
            self.ranking.start()

    async def close(self) -> None:
        """Wait for the requests already running on this version, then stop its workers."""
        while self.in_flight:
            await asyncio.sleep(0.005)
        await self.retrieval.stop()
        if self.ranking is not None:
            await self.ranking.stop()

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

        Counted in `in_flight` so a reload never stops a worker under a running request.
        """
        self.in_flight += 1
        try:
            return await self._recommend(store, user_id, k, exclude_seen, exclude_items, filters, history)
        finally:
            self.in_flight -= 1

    async def _history(
        self, store: EventStore, user: int | None, user_id: str | None, history: list[str] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(items, like/dislike feedback): the bundle's training history, store events, then `history`."""
        items, feedback = [], []
        if user is not None:
            items.append(self.bundle.user_history(user))
            if self.bundle.history_feedback is not None:
                feedback.append(self.bundle.user_feedback(user))
        if user_id is not None:
            events = await store.recent(user_id, HISTORY_EVENTS)
            # Events were checked against the bundle that accepted them; a newer bundle may lack some.
            known = [(self.bundle.items.index(e.item_id), e) for e in events]
            known = [(i, e) for i, e in known if i is not None]
            items.append(np.array([i for i, _ in known], dtype=np.int64))
            feedback.append(np.array([event_feedback(e.type, e.value) for _, e in known], dtype=np.int64))
        asked = self.item_indices(history or [], "history")
        items.append(asked)
        feedback.append(np.ones(len(asked), dtype=np.int64))  # items a client sends: consumed, liked
        seq = np.concatenate(items)
        return seq, (np.concatenate(feedback) if self.ranking is not None else seq[:0])

    def _can_score(self, user: int | None, seq: np.ndarray) -> bool:
        """A fusion scores any history or known user; sequence models any history, factor models users."""
        if self.bundle.fusion is not None:
            return len(seq) > 0 or user is not None
        return user is not None if self.bundle.model.needs_user_id else len(seq) > 0

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
        seq, feedback = await self._history(store, user, user_id, history)
        blocked = self._blocked(seq if exclude_seen else seq[:0], exclude_items or [], filters)
        if not self._can_score(user, seq):
            return self._popular(blocked, k, len(seq))
        wanted = k if self.ranking is None else max(k, RANK_POOL)
        n = min(self.n_items, wanted + int(blocked.sum()) + CANDIDATE_MARGIN)
        query = Query(-1 if user is None else user, seq, n)
        scores, items = await self.retrieval.submit(query)
        ranked_by = "retrieval" if self.bundle.fusion is None else "fusion"
        if ranked_by == "retrieval" and n < self.n_items and _allowed(items, blocked).sum() < min(k, wanted):
            scores, items = await self.retrieval.submit(replace(query, n=self.n_items))
        keep = _allowed(items, blocked)
        items, listed = items[keep][:wanted], scores[keep][:wanted].tolist()
        if len(items) < k:  # a fusion's candidates ran out
            extra = self.popular[~blocked[self.popular] & ~np.isin(self.popular, items)][: k - len(items)]
            items, listed = np.concatenate([items, extra]), listed + [None] * len(extra)
        if len(items) == 0 or all(s is None for s in listed):  # e.g. only user-id members, unknown user
            return self._popular(blocked, k, len(seq))
        if self.ranking is not None and len(seq) > 0:
            probs = await self.ranking.submit(RankQuery(query.user, seq, feedback, items))
            order = np.argsort(-probs, kind="stable")
            items, listed, ranked_by = items[order], probs[order].tolist(), "ctr"
        return Recommendation(self._ids(items[:k]), listed[:k], "model", len(seq), ranked_by)

    def _popular(self, blocked: np.ndarray, k: int, history_size: int) -> Recommendation:
        items = self.popular[~blocked[self.popular]][:k]
        scores = self.bundle.popularity[items].astype(float).tolist()
        return Recommendation(self._ids(items), scores, "popular", history_size, "popular")

    def similar(self, item: int, k: int) -> Recommendation:
        """Items whose vectors have the largest inner product with this item's, the item itself left out."""
        if self.index is None or self.bundle.item_vectors is None:
            raise NoItemVectors(f"model {self.bundle.model.name} has no item vectors to compare items with")
        scores, items = self.index.search(self.bundle.item_vectors[item : item + 1], k + 1)
        keep = (items[0] >= 0) & (items[0] != item)
        return Recommendation(
            self._ids(items[0][keep][:k]), scores[0][keep][:k].tolist(), "model", 0, "retrieval"
        )

    def _blocked(self, seen: np.ndarray, exclude: list[str], filters: Filters | None) -> np.ndarray:
        """[n_items] bool: items that must not be recommended."""
        blocked = np.zeros(self.n_items, dtype=bool)
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


def _allowed(found: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """Which retrieved slots hold a real item (not a -1 pad) that no exclusion or filter blocks."""
    return (found >= 0) & ~blocked[np.maximum(found, 0)]
