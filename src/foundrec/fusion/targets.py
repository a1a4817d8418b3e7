"""Ranks of the evaluation targets within fused candidate rows, and metrics@K from them.

A target's rank follows the evaluator's rule (stable: equal scores ordered by item index; candidate
rows are in item order), so metrics@K equal FullRankingEvaluator's on `Fusion.score` whenever a row has
at least K candidates. A target no member listed is a miss. Used to fit on validation and to compare
many fusions without scoring the members again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from foundrec.data.sequences import Sequences
from foundrec.eval.ranking import metric_names, per_user_metrics, target_ranks
from foundrec.fusion.candidates import Candidates, TopLists, align
from foundrec.models.base import UserBatch

NOT_LISTED = torch.iinfo(torch.int32).max  # rank of a target outside the candidates: never within K


@dataclass(frozen=True)
class LocatedTargets:
    """Each target's row and column in a block of candidate rows."""

    rows: torch.Tensor  # int64 [T]
    slots: torch.Tensor  # int64 [T], column of the target in its row (0 when not found)
    found: torch.Tensor  # bool [T]
    n_rows: int

    @classmethod
    def locate(cls, items: torch.Tensor, targets: UserBatch) -> LocatedTargets:
        rows = targets.row_ids()
        match = items[rows] == targets.items[:, None]  # (T, C)
        return cls(rows, match.int().argmax(1), match.any(1), items.shape[0])

    def ranks(self, fused: torch.Tensor) -> torch.Tensor:
        """1-based rank of each target in its row of `fused` [B, C] (pads already -inf)."""
        ranks = target_ranks(fused, self.rows, self.slots)
        return torch.where(self.found, ranks, NOT_LISTED)

    def per_user(self, fused: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
        """[B, n_metrics] in `metric_names(ks)` order; only the @K columns are meaningful."""
        return per_user_metrics(self.ranks(fused), self.rows, self.n_rows, ks)


def masked(cands: Candidates, fused: torch.Tensor) -> torch.Tensor:
    """Fused scores with the pads of the candidate rows at -inf."""
    return torch.where(cands.pad, -torch.inf, fused)


def candidate_per_user(
    fuse: Callable[[Candidates], torch.Tensor],
    lists: TopLists,
    targets: Sequences,
    ks: tuple[int, ...] = (10,),
    chunk: int = 2048,
) -> torch.Tensor:
    """[users, n_metrics] in `metric_names(ks)` order, from precomputed top lists; @K columns only."""
    values = []
    for start in range(0, len(lists), chunk):
        cands = align(lists.rows(start, start + chunk))
        located = LocatedTargets.locate(cands.items, UserBatch.from_sequences(targets, start, start + chunk))
        values.append(located.per_user(masked(cands, fuse(cands)), ks))
    return torch.cat(values)


def candidate_metrics(
    fuse: Callable[[Candidates], torch.Tensor],
    lists: TopLists,
    targets: Sequences,
    ks: tuple[int, ...] = (10,),
    chunk: int = 2048,
) -> dict[str, float]:
    """hr@K, ndcg@K, ... of a fusion over precomputed top lists, averaged over all users."""
    means = candidate_per_user(fuse, lists, targets, ks, chunk).double().mean(0)
    return {name: float(v) for name, v in zip(metric_names(ks), means, strict=True) if "@" in name}
