"""Members' top-N lists and their per-user union: the candidate path every combiner fuses.

Why candidates: fusing dense [users, items] matrices does not scale to large catalogues. Each member
contributes only its N best unseen items per user; combiners fuse the union, every other item scores -inf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from foundrec.data.split import EvalSet
from foundrec.errors import FoundrecError
from foundrec.eval.ranking import top_items
from foundrec.models.base import Recommender, UserBatch

EMPTY = -1  # item id of an empty place in a list or a pad in a candidate row


@dataclass(frozen=True)
class TopLists:
    """Each member's N best items per user, best first; equal scores ordered by item index."""

    items: torch.Tensor  # int64 [M, B, N], EMPTY where the member had fewer than N finite scores
    scores: torch.Tensor  # float32 [M, B, N], -inf at EMPTY places

    def __len__(self) -> int:
        return self.items.shape[1]

    def rows(self, start: int, stop: int) -> TopLists:
        return TopLists(self.items[:, start:stop], self.scores[:, start:stop])

    def members(self, index: Sequence[int]) -> TopLists:
        """The lists of a subset of members, in the given order."""
        return TopLists(self.items[list(index)], self.scores[list(index)])


def best_unseen(scores: torch.Tensor, n: int, seen: UserBatch | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One member's [B, N] best items and their scores; `seen` histories are masked first.

    Masking before the cut matters: otherwise part of each list is spent on items the evaluator removes.
    """
    if torch.isnan(scores).any():
        raise FoundrecError("a fusion member produced NaN scores")
    if seen is not None:
        scores[seen.row_ids(), seen.items] = -torch.inf
    n = min(n, scores.shape[1])
    # topk picks any of the items tied with the n-th; the evaluator's order takes the smallest indices
    cut = scores.gather(1, top_items(scores, n)).amin(1, keepdim=True)
    tied = scores == cut
    room = n - (scores > cut).sum(1, keepdim=True)
    chosen = (scores > cut) | (tied & (torch.cumsum(tied, 1) <= room))
    items = chosen.nonzero()[:, 1].view(-1, n)  # exactly n per row, in item order
    values = scores.gather(1, items)
    by_score = torch.argsort(values, dim=1, descending=True, stable=True)
    items, values = items.gather(1, by_score), values.gather(1, by_score)
    return torch.where(values > -torch.inf, items, EMPTY), values


def top_lists(models: Sequence[Recommender], batch: UserBatch, n: int, exclude_seen: bool) -> TopLists:
    """Score the batch with every member and keep each one's N best (unseen) items."""
    items, scores = [], []
    n_items = None
    for model in models:
        dense = model.score(batch).float()
        if n_items is not None and dense.shape[1] != n_items:
            raise FoundrecError(
                f"fusion members score different catalogues ({n_items} and {dense.shape[1]} items); "
                "fuse only models trained on the same data"
            )
        n_items = dense.shape[1]
        best, values = best_unseen(dense, n, batch if exclude_seen else None)
        items.append(best)
        scores.append(values)
    return TopLists(torch.stack(items), torch.stack(scores))


def collect_top_lists(
    models: Sequence[Recommender], data: EvalSet, n: int, exclude_seen: bool = True, batch_size: int = 1024
) -> TopLists:
    """Top lists for every user of an evaluation set, computed once so many fusions can reuse them."""
    parts = [
        top_lists(models, UserBatch.from_sequences(data.history, start, start + batch_size), n, exclude_seen)
        for start in range(0, len(data), batch_size)
    ]
    return TopLists(torch.cat([p.items for p in parts], 1), torch.cat([p.scores for p in parts], 1))


@dataclass(frozen=True)
class Candidates:
    """The union of the members' lists per user, in item order, with each member's view of every candidate."""

    items: torch.Tensor  # int64 [B, C], ascending per row, EMPTY pads at the end
    ranks: torch.Tensor  # int64 [M, B, C], 1-based place in member m's list; 0: not in it
    scores: torch.Tensor  # float32 [M, B, C], the member's score; nan where not in its list
    top_n: int  # N, the length of the members' lists

    @property
    def listed(self) -> torch.Tensor:
        return self.ranks > 0

    @property
    def lengths(self) -> torch.Tensor:
        """[M, B, 1]: how many items each member listed for each user."""
        return self.listed.sum(2, keepdim=True)

    @property
    def pad(self) -> torch.Tensor:
        return self.items == EMPTY


def align(lists: TopLists) -> Candidates:
    """Union of the members' lists per row (sorted by item), every member's rank and score placed on it."""
    m, b, n = lists.items.shape
    flat = lists.items.permute(1, 0, 2).reshape(b, m * n)  # (B, M*N), member-major within a row
    key = torch.where(flat == EMPTY, torch.iinfo(torch.int64).max, flat)
    key, order = torch.sort(key, dim=1, stable=True)
    real = flat.gather(1, order) != EMPTY
    first = real.clone()
    first[:, 1:] &= key[:, 1:] != key[:, :-1]
    slot = torch.cumsum(first, 1) - 1  # candidate column of each sorted entry
    width = max(int(first.sum(1).max()) if b else 0, 1)  # one pad column when nobody listed anything
    row = torch.arange(b)[:, None].expand(b, m * n)
    items = torch.full((b, width), EMPTY, dtype=torch.int64)
    items[row[first], slot[first]] = key[first]
    member, place = order // n, order % n
    ranks = torch.zeros((m, b, width), dtype=torch.int64)
    ranks[member[real], row[real], slot[real]] = place[real] + 1
    scores = torch.full((m, b, width), float("nan"))
    flat_scores = lists.scores.permute(1, 0, 2).reshape(b, m * n).gather(1, order)
    scores[member[real], row[real], slot[real]] = flat_scores[real]
    return Candidates(items, ranks, scores, n)


def scatter_scores(cands: Candidates, fused: torch.Tensor, n_items: int) -> torch.Tensor:
    """Dense [B, n_items] scores: the fused value on each candidate, -inf everywhere else."""
    b = cands.items.shape[0]
    out = torch.full((b, n_items + 1), -torch.inf)  # the last column absorbs the pads
    out.scatter_(1, torch.where(cands.pad, n_items, cands.items), torch.where(cands.pad, -torch.inf, fused))
    return out[:, :n_items]
