"""Fixed rules over the members' ranked lists: reciprocal rank fusion, Borda count, majority voting.

They use places only, never raw scores, so members on any scale combine without normalisation, and
nothing is learned (`fit_validation` is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from foundrec.fusion.base import Fusion
from foundrec.fusion.candidates import Candidates
from foundrec.fusion.members import Member


class ReciprocalRankFusion(Fusion):
    """score(i) = sum over the members that list i of 1 / (k + place); k = 60 as in Cormack et al. 2009."""

    name = "fusion-rrf"

    def __init__(
        self, members: Sequence[Member], k: float = 60.0, top_n: int = 200, exclude_seen: bool = True
    ) -> None:
        super().__init__(members, top_n, exclude_seen)
        self.k = k

    def fuse(self, cands: Candidates) -> torch.Tensor:
        return torch.where(cands.listed, 1.0 / (self.k + cands.ranks), 0.0).sum(0)


class BordaCount(Fusion):
    """score(i) = sum over the members that list i of N - place + 1 (N points for a member's first)."""

    name = "fusion-borda"

    def fuse(self, cands: Candidates) -> torch.Tensor:
        return torch.where(cands.listed, cands.top_n - cands.ranks + 1, 0).sum(0).float()


class MajorityVoting(Fusion):
    """Items ordered by how many members have them in their top k; equal votes by mean reciprocal place.

    The tie-break term is below 1/2, so an item with more votes always ranks higher.
    """

    name = "fusion-voting"

    def __init__(
        self, members: Sequence[Member], k: int = 20, top_n: int = 200, exclude_seen: bool = True
    ) -> None:
        super().__init__(members, top_n, exclude_seen)
        self.k = k

    def fuse(self, cands: Candidates) -> torch.Tensor:
        votes = (cands.listed & (cands.ranks <= self.k)).sum(0).float()
        reciprocal = torch.where(cands.listed, 1.0 / cands.ranks.clamp(min=1), 0.0).mean(0)
        return votes + 0.49 * reciprocal
