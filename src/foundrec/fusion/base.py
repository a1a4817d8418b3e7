"""Fusion: a recommender made of trained recommenders, behind the same fit / score / save / load.

Protocol: members are trained on the training split beforehand; `fit(train, n_items)` only checks them
(and learns what the training split offers, such as popularity); `fit_validation(valid)` learns what
needs targets (weights) from the validation split, histories = training items; the test split is then
evaluated once like any other model. Since a fusion is a Recommender, FullRankingEvaluator evaluates it
and another fusion can take it as a member.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from foundrec.data.sequences import Sequences
from foundrec.data.split import EvalSet
from foundrec.errors import FoundrecError
from foundrec.fusion.candidates import (
    Candidates,
    TopLists,
    align,
    collect_top_lists,
    scatter_scores,
    top_lists,
)
from foundrec.fusion.members import Member, check_members, load_member
from foundrec.models.base import Recommender, UserBatch


class Fusion(Recommender):
    """Fuses the union of the members' top-N unseen items per user; every other item scores -inf.

    top_n: length of each member's list (the candidate path scales with it, not with the catalogue).
    exclude_seen: mask each user's history before the lists are cut, as the evaluator does.
    """

    learns_from_validation: ClassVar[bool] = False

    def __init__(self, members: Sequence[Member], top_n: int = 200, exclude_seen: bool = True) -> None:
        self.members = members
        self.top_n = top_n
        self.exclude_seen = exclude_seen

    @abstractmethod
    def fuse(self, cands: Candidates) -> torch.Tensor:
        """[B, C] fused scores of the candidates (pads may hold anything; callers mask them)."""

    def fit(self, train: Sequences, n_items: int) -> Self:
        """Check that the (already trained) members share the catalogue; nothing is trained here."""
        if self.top_n < 1:
            raise FoundrecError(f"top_n must be at least 1, got {self.top_n}")
        check_members(list(self.members), n_items)
        self.n_items_ = n_items
        return self

    def fit_validation(self, valid: EvalSet) -> Self:
        """Learn from validation targets (history = training items); a no-op for fixed rules."""
        if not self.learns_from_validation:
            self._require_fit()
            return self
        return self.fit_top_lists(self.top_lists_of(valid), valid.targets)

    def fit_top_lists(self, lists: TopLists, targets: Sequences) -> Self:
        """`fit_validation` on precomputed lists, so several fusions share one scoring pass."""
        self._require_fit()
        return self

    def top_lists_of(self, data: EvalSet) -> TopLists:
        self._require_fit()
        return collect_top_lists(self.models(), data, self.top_n, self.exclude_seen)

    def models(self) -> list[Recommender]:
        return [m.model for m in self.members]

    def candidates(self, batch: UserBatch) -> Candidates:
        return align(top_lists(self.models(), batch, self.top_n, self.exclude_seen))

    @torch.no_grad()
    def score(self, batch: UserBatch) -> torch.Tensor:
        self._require_fit()
        cands = self.candidates(batch)
        return scatter_scores(cands, self.fuse(cands), self.n_items_)

    def n_parameters(self) -> int:
        """The members' parameters (the fusion's own weights are a handful)."""
        return sum(m.model.n_parameters() for m in self.members)

    def _require_fit(self) -> None:
        if not hasattr(self, "n_items_"):
            raise FoundrecError(f"{type(self).__name__}: call fit(train, n_items) before using it")

    def fitted_values(self) -> dict[str, Any]:
        """Learned values, JSON-safe (weights, coefficients)."""
        return {}

    def _load_fitted_values(self, fitted: dict[str, Any]) -> None:
        """Restore what `fitted_values` wrote."""

    def save(self, path: Path) -> None:
        """model.json: kind, hyperparameters, fitted values, and the members' saved model folders.

        A member without a folder is saved under path/members/NAME; folders are stored relative to the
        fusion folder when inside it, so the whole folder can be moved.
        """
        self._require_fit()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        refs = []
        for member in self.members:
            folder = member.path
            if folder is None:
                folder = path / "members" / member.name
                member.model.save(folder)
            folder = Path(folder).resolve()
            inside = folder.is_relative_to(path.resolve())
            stored = os.path.relpath(folder, path) if inside else str(folder)
            refs.append({"name": member.name, "path": stored})
        params = {k: v for k, v in self.get_params().items() if k != "members"}
        spec = {
            "model": self.name,
            "params": params,
            "members": refs,
            "meta": {"n_items": self.n_items_},
            "fitted": self.fitted_values(),
        }
        (path / "model.json").write_text(json.dumps(spec, indent=2))
        if self._state():
            torch.save(self._state(), path / "tensors.pt")

    @classmethod
    def load(cls, path: Path) -> Fusion:
        """The fusion saved in `path`, its members loaded from their folders."""
        from foundrec.fusion import FUSIONS

        path = Path(path)
        spec = json.loads((path / "model.json").read_text())
        members = [load_member(path / ref["path"], ref["name"]) for ref in spec["members"]]
        model = FUSIONS[spec["model"]](members=members, **spec["params"])
        model.n_items_ = spec["meta"]["n_items"]
        model._load_fitted_values(spec["fitted"])
        if (path / "tensors.pt").is_file():
            for key, value in torch.load(path / "tensors.pt", weights_only=True).items():
                setattr(model, key, value)
        return model
