"""Stacking: logistic regression over the members' views of each candidate plus its popularity.

Trained on validation targets only: each validation user's target (when some member listed it) is a
positive, `negatives` random other candidates of the same user are negatives. Sampling negatives
uniformly shifts only the intercept, which does not change a ranking. Scoring is the linear logit, in
torch; scikit-learn is needed for fitting only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch

from foundrec.data.sequences import Sequences
from foundrec.errors import FoundrecError
from foundrec.fusion.base import Fusion
from foundrec.fusion.candidates import Candidates, TopLists, align
from foundrec.fusion.members import Member
from foundrec.fusion.normalize import normalize
from foundrec.fusion.targets import LocatedTargets
from foundrec.models.base import UserBatch


class StackingFusion(Fusion):
    """logit(i) = b + sum_f coef_f * feature_f(i).

    Features per member: min-max normalised score, 1 / place, listed or not; then log popularity of the
    item in the training split, scaled to [0, 1]. `c` is scikit-learn's inverse L2 strength.
    """

    name = "fusion-stacking"
    learns_from_validation = True

    def __init__(
        self,
        members: Sequence[Member],
        negatives: int = 50,
        c: float = 1.0,
        seed: int = 0,
        top_n: int = 200,
        exclude_seen: bool = True,
    ) -> None:
        super().__init__(members, top_n, exclude_seen)
        self.negatives = negatives
        self.c = c
        self.seed = seed

    def fit(self, train: Sequences, n_items: int) -> Self:
        """Check the members; keep the training split's item popularity (a feature)."""
        super().fit(train, n_items)
        counts = torch.from_numpy(np.bincount(train.items, minlength=n_items).astype(np.float32))
        self.log_popularity_ = torch.log1p(counts) / max(float(torch.log1p(counts.max())), 1e-12)
        return self

    def feature_names(self) -> list[str]:
        per_member = [f"{m.name}/{f}" for m in self.members for f in ("minmax", "reciprocal_rank", "listed")]
        return [*per_member, "log_popularity"]

    def features(self, cands: Candidates) -> torch.Tensor:
        """[B, C, F] in `feature_names` order."""
        listed = cands.listed.float()
        reciprocal = listed / cands.ranks.clamp(min=1)
        per_member = torch.stack([normalize(cands, "minmax"), reciprocal, listed], dim=-1)  # (M, B, C, 3)
        per_member = per_member.permute(1, 2, 0, 3).flatten(2)  # (B, C, 3M)
        popularity = self.log_popularity_[cands.items.clamp(min=0)]  # (B, C)
        return torch.cat([per_member, popularity[..., None]], dim=-1)

    def fuse(self, cands: Candidates) -> torch.Tensor:
        if not hasattr(self, "coef_"):
            raise FoundrecError("StackingFusion: call fit_validation(valid) before scoring")
        return self.features(cands) @ torch.tensor(self.coef_) + self.intercept_

    def fit_top_lists(self, lists: TopLists, targets: Sequences) -> Self:
        from sklearn.linear_model import LogisticRegression

        self._require_fit()
        x, y = self._training_rows(lists, targets)
        if y.sum() == 0:
            raise FoundrecError("no validation target is among the members' candidates; raise top_n")
        model = LogisticRegression(C=self.c, max_iter=1000)
        model.fit(x, y)
        self.coef_ = model.coef_[0].tolist()
        self.intercept_ = float(model.intercept_[0])
        return self

    def _training_rows(
        self, lists: TopLists, targets: Sequences, chunk: int = 2048
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features of each found target (label 1) and of sampled non-target candidates (label 0)."""
        rng = torch.Generator().manual_seed(self.seed)
        xs, ys = [], []
        for start in range(0, len(lists), chunk):
            cands = align(lists.rows(start, start + chunk))
            batch = UserBatch.from_sequences(targets, start, start + chunk)
            located = LocatedTargets.locate(cands.items, batch)
            feats = self.features(cands)
            positive = torch.zeros_like(cands.pad)
            positive[located.rows[located.found], located.slots[located.found]] = True
            # random keys, lowest `negatives` per row among the real non-target candidates
            keys = torch.rand(cands.items.shape, generator=rng).masked_fill(cands.pad | positive, 2.0)
            k = min(self.negatives, keys.shape[1])
            picked = torch.topk(keys, k, dim=1, largest=False)
            negative = torch.zeros_like(positive).scatter_(1, picked.indices, picked.values < 2.0)
            xs += [feats[positive], feats[negative]]
            ys += [torch.ones(int(positive.sum())), torch.zeros(int(negative.sum()))]
        return torch.cat(xs).numpy(), torch.cat(ys).numpy()

    def fitted_values(self) -> dict[str, Any]:
        if not hasattr(self, "coef_"):
            return {}
        return {
            "features": self.feature_names(),
            "coef": self.coef_,
            "intercept": self.intercept_,
        }

    def _load_fitted_values(self, fitted: dict[str, Any]) -> None:
        if "coef" in fitted:
            self.coef_ = fitted["coef"]
            self.intercept_ = fitted["intercept"]
