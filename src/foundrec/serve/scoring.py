"""What the models compute for one micro-batch: retrieval (top-n items of a history) and ranking.

Retrieval of a dot-product model encodes the histories and searches the FAISS index of its item vectors.
A fusion runs its own candidate path (each member's top-N unseen items, their union, the combiner), so
a served fusion ranks exactly as evaluation scored it. Up to EXACT_MAX_ITEMS items every member scores
the catalogue densely, which costs what exact FAISS search costs anyway; above it, members with item
vectors take their lists from a FAISS index of their own.
Ranking: the bundle's CTR head reads the history with like/dislike feedback and gives each retrieved
candidate P(like).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from foundrec.data.labeled import LIKE_THRESHOLD, PAD_FEEDBACK, LabeledBatch
from foundrec.fusion import Fusion
from foundrec.fusion.candidates import EMPTY, Candidates, TopLists, align, best_unseen
from foundrec.models.base import DotProductRecommender, UserBatch
from foundrec.models.heads import SequenceTaskModel
from foundrec.serve.index import EXACT_MAX_ITEMS, ItemIndex

Result = tuple[np.ndarray, np.ndarray]  # (scores [n], item indices [n]), best first; -1 where none


@dataclass
class Query:
    user: int  # vocabulary index; -1 for a user the bundle's models never trained on
    history: np.ndarray  # int64 item indices, time order
    n: int  # candidates wanted


def event_feedback(kind: str, value: float | None) -> int:
    """Like (1) or dislike (0) of a store event, as the CTR head learnt them (like = rating > 3).

    Only a rating of 3 or less is a dislike: views, clicks and purchases are consumption, which is
    what every training event was; a rating without a value counts as a view.
    """
    if kind == "rating" and value is not None:
        return int(value > LIKE_THRESHOLD)
    return 1


def user_batch(queries: list[Query], max_len: int = 0) -> UserBatch:
    """The queries' users and histories; with max_len, only the last max_len items of each history."""
    histories = [q.history[-max_len:] if max_len else q.history for q in queries]
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    return UserBatch(
        users=torch.tensor([q.user for q in queries], dtype=torch.int64),
        items=torch.from_numpy(np.concatenate(histories).astype(np.int64)),
        offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)])),
    )


class DotProductRetriever:
    """Encode the users or histories, then one FAISS search for the whole batch."""

    def __init__(self, model: DotProductRecommender, index: ItemIndex, max_len: int) -> None:
        self.model, self.index, self.max_len = model, index, max_len

    def __call__(self, queries: list[Query]) -> list[Result]:
        vectors = self.model.user_vectors(user_batch(queries, self.max_len)).numpy()
        scores, items = self.index.search(vectors, max(q.n for q in queries))
        return [(scores[i, : q.n], items[i, : q.n]) for i, q in enumerate(queries)]


class FusionRetriever:
    """The fusion's top-n per history: its candidates, ordered by the fused score (ties: item order)."""

    def __init__(self, fusion: Fusion, exact_max_items: int = EXACT_MAX_ITEMS) -> None:
        self.fusion = fusion
        self.indexes = {}
        if fusion.n_items_ > exact_max_items:
            for m, model in enumerate(fusion.models()):
                if isinstance(model, DotProductRecommender):
                    self.indexes[m] = ItemIndex(model.item_vectors().detach().numpy())

    @torch.no_grad()
    def __call__(self, queries: list[Query]) -> list[Result]:
        cands = self.candidates(user_batch(queries))
        fused = torch.where(cands.pad, -torch.inf, self.fusion.fuse(cands))
        order = torch.argsort(fused, dim=1, descending=True, stable=True)  # candidates are in item order
        scores, items = fused.gather(1, order), cands.items.gather(1, order)
        items = torch.where(scores > -torch.inf, items, EMPTY)
        return [(scores[i, : q.n].numpy(), items[i, : q.n].numpy()) for i, q in enumerate(queries)]

    def candidates(self, batch: UserBatch) -> Candidates:
        if not self.indexes:
            return self.fusion.candidates(batch)
        n, seen = self.fusion.top_n, batch if self.fusion.exclude_seen else None
        items, scores = [], []
        for m, model in enumerate(self.fusion.models()):
            if m in self.indexes:
                best, values = self._ann_list(model, self.indexes[m], batch, n, seen)
            else:
                best, values = best_unseen(model.score(batch).float(), n, seen)
            items.append(best)
            scores.append(values)
        return align(TopLists(torch.stack(items), torch.stack(scores)))

    @staticmethod
    def _ann_list(
        model: DotProductRecommender, index: ItemIndex, batch: UserBatch, n: int, seen: UserBatch | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A member's [B, n] best unseen items from its index: n + the longest history, seen ones dropped."""
        extra = int(batch.lengths.max()) if seen is not None and len(batch.items) else 0
        values, found = (
            torch.from_numpy(a) for a in index.search(model.user_vectors(batch).numpy(), n + extra)
        )
        drop = found < 0
        if seen is not None:
            drop |= _in_history(found, seen)
        if model.needs_user_id:
            drop |= (batch.users < 0)[:, None]  # no opinion on users it never trained on
        values = values.float().masked_fill(drop, -torch.inf)
        by_score = torch.argsort(values, dim=1, descending=True, stable=True)[:, :n]
        values, found = values.gather(1, by_score), found.gather(1, by_score)
        pad = n - values.shape[1]  # a catalogue smaller than n
        values = torch.nn.functional.pad(values, (0, pad), value=-torch.inf)
        found = torch.nn.functional.pad(found, (0, pad), value=EMPTY)
        return torch.where(values > -torch.inf, found, EMPTY), values


def _in_history(found: torch.Tensor, batch: UserBatch) -> torch.Tensor:
    """[B, n] bool: found[b, j] is in history b."""
    mask = torch.zeros_like(found, dtype=torch.bool)
    rows = batch.row_ids()
    for b in range(len(batch)):
        mask[b] = torch.isin(found[b], batch.items[rows == b])
    return mask


@dataclass
class RankQuery:
    user: int  # vocabulary index; -1 for a user the head never trained on
    history: np.ndarray  # int64 item indices, time order, at least one
    feedback: np.ndarray  # int64 [len(history)], 1 like, 0 dislike
    candidates: np.ndarray  # int64 item indices to score


class CTRRanker:
    """P(like) of each candidate after its history, from the fine-tuned head (one backbone pass per batch)."""

    def __init__(self, head: SequenceTaskModel) -> None:
        self.head = head
        backbone = head.network_.backbone
        self.max_len = backbone.cfg.max_len
        self.pad_item = backbone.items.ids.num_embeddings - 1  # n_items: the padding token

    def __call__(self, queries: list[RankQuery]) -> list[np.ndarray]:
        histories = [q.history[-self.max_len :] for q in queries]
        feedback = [q.feedback[-self.max_len :] for q in queries]
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        width = int(lengths.max())
        tokens = np.full((len(queries), width), self.pad_item, dtype=np.int64)  # (B, T), right padded
        marks = np.full((len(queries), width), PAD_FEEDBACK, dtype=np.int64)
        for b, (h, f) in enumerate(zip(histories, feedback, strict=True)):
            tokens[b, : len(h)], marks[b, : len(f)] = h, f
        n_cands = np.array([len(q.candidates) for q in queries], dtype=np.int64)
        row = np.repeat(np.arange(len(queries)), n_cands)  # (N,)
        zeros = torch.zeros(len(row))
        batch = LabeledBatch(
            tokens=torch.from_numpy(tokens),
            feedback=torch.from_numpy(marks),
            row=torch.from_numpy(row),
            position=torch.from_numpy(lengths[row] - 1),  # the state after the last history event
            users=torch.from_numpy(np.array([q.user for q in queries], dtype=np.int64)[row]),
            items=torch.from_numpy(np.concatenate([q.candidates for q in queries]).astype(np.int64)),
            labels=zeros,
            ratings=zeros,
        )
        probs = self.head.predict_proba(batch).numpy()
        return np.split(probs, np.cumsum(n_cands)[:-1])
