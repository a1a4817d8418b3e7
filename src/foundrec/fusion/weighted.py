"""Weighted average of per-user normalised member scores, weights fitted on validation NDCG@10.

Fitting is coordinate ascent (Metzler & Croft's method for linear rankers) rather than Optuna: with a
handful of members one weight at a time over a fixed grid finds the optimum of this low-dimensional,
scale-invariant objective in a few hundred cheap evaluations, deterministically and without another
dependency; a TPE search would spend its trials on the same few dimensions, with a random seed in the
result. It starts from the best of equal weights and each member alone, so on validation the fusion is
never worse than its best member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import torch

from foundrec.data.sequences import Sequences
from foundrec.errors import FoundrecError
from foundrec.eval.ranking import metric_names
from foundrec.fusion.base import Fusion
from foundrec.fusion.candidates import Candidates, TopLists, align
from foundrec.fusion.members import Member
from foundrec.fusion.normalize import Normalization, normalize
from foundrec.fusion.targets import LocatedTargets
from foundrec.models.base import UserBatch

NDCG10 = metric_names((10,)).index("ndcg@10")
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)  # relative weights tried per member


class WeightedScoreFusion(Fusion):
    """score(i) = sum_m w_m * normalised score of member m (normalization: rank, minmax or zscore).

    `weights` fixes the weights by hand; `fit_validation` replaces them with fitted ones (`weights_`,
    summing to 1). Without either, members count equally.
    """

    name = "fusion-weighted"
    learns_from_validation = True

    def __init__(
        self,
        members: Sequence[Member],
        normalization: Normalization = "minmax",
        weights: Sequence[float] | None = None,
        rounds: int = 5,
        top_n: int = 200,
        exclude_seen: bool = True,
    ) -> None:
        super().__init__(members, top_n, exclude_seen)
        self.normalization = normalization
        self.weights = weights
        self.rounds = rounds

    def current_weights(self) -> torch.Tensor:
        if hasattr(self, "weights_"):
            return torch.tensor(self.weights_)
        if self.weights is not None:
            if len(self.weights) != len(self.members):
                raise FoundrecError(f"{len(self.weights)} weights given for {len(self.members)} members")
            return torch.tensor([float(w) for w in self.weights])
        return torch.ones(len(self.members))

    def fuse(self, cands: Candidates) -> torch.Tensor:
        return torch.einsum("m,mbc->bc", self.current_weights(), normalize(cands, self.normalization))

    def fit_top_lists(self, lists: TopLists, targets: Sequences) -> Self:
        """Coordinate ascent on validation NDCG@10 over the grid, until a round gains nothing."""
        self._require_fit()
        objective = _ValidationNdcg(lists, targets, self.normalization)
        m = len(self.members)
        starts = [torch.ones(m)] + [torch.eye(m)[i] for i in range(m)]
        values = [objective(w) for w in starts]
        best = max(range(len(starts)), key=lambda i: values[i])
        weights, value = starts[best].clone(), values[best]
        for _ in range(self.rounds):
            gained = False
            for i in range(m):
                for w in GRID:
                    trial = weights.clone()
                    trial[i] = w * max(float(weights.max()), 1e-12)  # relative to the largest weight
                    if trial.sum() <= 0:
                        continue
                    score = objective(trial)
                    if score > value + 1e-9:
                        weights, value, gained = trial, score, True
            if not gained:
                break
        self.weights_ = (weights / weights.sum()).tolist()
        self.valid_ndcg_ = value
        return self

    def fitted_values(self) -> dict[str, Any]:
        if not hasattr(self, "weights_"):
            return {}
        return {"weights": self.weights_, "valid_ndcg@10": self.valid_ndcg_}

    def _load_fitted_values(self, fitted: dict[str, Any]) -> None:
        if "weights" in fitted:
            self.weights_ = fitted["weights"]
            self.valid_ndcg_ = fitted["valid_ndcg@10"]


class _ValidationNdcg:
    """NDCG@10 of any weighting: candidates aligned and normalised once, then one product per call."""

    def __init__(self, lists: TopLists, targets: Sequences, normalization: str, chunk: int = 2048) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor, LocatedTargets]] = []
        for start in range(0, len(lists), chunk):
            cands = align(lists.rows(start, start + chunk))
            batch = UserBatch.from_sequences(targets, start, start + chunk)
            located = LocatedTargets.locate(cands.items, batch)
            self.parts.append((normalize(cands, normalization), cands.pad, located))
        self.n_users = len(lists)

    def __call__(self, weights: torch.Tensor) -> float:
        total = 0.0
        for values, pad, located in self.parts:
            fused = torch.where(pad, -torch.inf, torch.einsum("m,mbc->bc", weights, values))
            total += float(located.per_user(fused, (10,))[:, NDCG10].double().sum())
        return total / self.n_users
