"""Per-user score normalisation of each member's list, so scores on different scales can be added.

Statistics come from the member's own top-N list (all a candidate path knows). A candidate the member did
not list gets the value of the list's worst place: it ranks below everything the member listed.
With N = n_items the list is every unseen item, i.e. the dense normalisation.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from foundrec.errors import FoundrecError
from foundrec.fusion.candidates import Candidates

Normalization = Literal["rank", "minmax", "zscore"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


def normalize(cands: Candidates, method: str) -> torch.Tensor:
    """[M, B, C] normalised member scores.

    rank: (L - r + 1) / L for place r of a list of L items (1 for the best), 0 when not listed.
    minmax: (s - min) / (max - min) over the list, 1 for a list of equal scores, 0 when not listed.
    zscore: (s - mean) / std over the list, (min - mean) / std when not listed, 0 for equal scores.
    """
    listed = cands.listed
    lengths = cands.lengths
    if method == "rank":
        size = lengths.clamp(min=1).float()
        return torch.where(listed, (size - cands.ranks + 1) / size, 0.0)
    scores = torch.where(listed, cands.scores, 0.0)
    low = torch.where(listed, cands.scores, torch.inf).amin(2, keepdim=True)
    if method == "minmax":
        high = torch.where(listed, cands.scores, -torch.inf).amax(2, keepdim=True)
        span = high - low
        value = torch.where(span > 0, (scores - low) / torch.where(span > 0, span, 1.0), 1.0)
        return torch.where(listed, value, 0.0)
    if method == "zscore":
        count = lengths.clamp(min=1).float()
        mean = scores.sum(2, keepdim=True) / count
        std = (torch.where(listed, scores - mean, 0.0).square().sum(2, keepdim=True) / count).sqrt()
        safe = torch.where(std > 0, std, 1.0)
        value = torch.where(listed, (scores - mean) / safe, (low - mean) / safe)
        return torch.where(std > 0, value, 0.0)
    raise FoundrecError(f"unknown normalization {method!r}; use one of {', '.join(NORMALIZATIONS)}")
