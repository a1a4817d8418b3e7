"""Popularity bias: how a model's top-K lists spread over the catalogue's popularity deciles.

Items are cut into ten equal-size groups by training-interaction count (ties broken by item index, as
for the long tail in ranking.py). A popularity-biased model puts most of its slots in decile 1.
"""

from __future__ import annotations

import numpy as np
import torch

from foundrec.data.split import EvalSet
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.models.base import Recommender

N_DECILES = 10


def popularity_deciles(item_counts: np.ndarray) -> np.ndarray:
    """Int [n_items]: 0 for the 10% most popular items ... 9 for the 10% least popular."""
    n = len(item_counts)
    order = np.argsort(-np.asarray(item_counts), kind="stable")
    deciles = np.empty(n, dtype=np.int64)
    deciles[order] = np.arange(n) * N_DECILES // max(n, 1)
    return deciles


def interaction_shares(item_counts: np.ndarray) -> list[float]:
    """Share of all training interactions that fall on each popularity decile: the catalogue's profile."""
    counts = np.bincount(popularity_deciles(item_counts), weights=item_counts, minlength=N_DECILES)
    return (counts / max(counts.sum(), 1)).tolist()


class TopKPopularity:
    """Counts top-K slots per popularity decile; pass it as `on_top` to `FullRankingEvaluator.evaluate`."""

    def __init__(self, item_counts: np.ndarray, k: int = 10) -> None:
        self.k = k
        self.deciles = torch.from_numpy(popularity_deciles(item_counts))
        self.counts = torch.zeros(N_DECILES, dtype=torch.float64)

    def __call__(self, top: torch.Tensor) -> None:  # top: (users, >= k) item indices, best first
        slots = self.deciles[top[:, : self.k].flatten()]
        self.counts += torch.bincount(slots, minlength=N_DECILES).double()

    def shares(self) -> list[float]:
        """Share of all counted slots per decile (zeros before any block was seen)."""
        return (self.counts / self.counts.sum().clamp(min=1)).tolist()


def recommended_popularity(
    evaluator: FullRankingEvaluator, model: Recommender, data: EvalSet, k: int = 10
) -> list[float]:
    """Share of `model`'s top-`k` slots on `data` per popularity decile (most popular first)."""
    if k > max(evaluator.ks):
        raise ValueError(f"k={k} is above the evaluator's largest cut-off {max(evaluator.ks)}")
    counter = TopKPopularity(evaluator.item_counts, k)
    evaluator.evaluate(model, data, on_top=counter)
    return counter.shares()
