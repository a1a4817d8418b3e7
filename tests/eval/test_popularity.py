"""Popularity deciles and the evaluator's top-K hook that feeds the report's popularity-bias plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foundrec.data.sequences import Sequences
from foundrec.data.split import EvalSet
from foundrec.eval.popularity import (
    TopKPopularity,
    interaction_shares,
    popularity_deciles,
    recommended_popularity,
)
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.models.base import Recommender, UserBatch


def csr(rows: list[list[int]]) -> Sequences:
    """Row u holds user u's items."""
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
        items=np.array([i for r in rows for i in r], dtype=np.int64),
        rows=np.arange(len(rows), dtype=np.int64),
    )


class PreferItems(Recommender):
    """Every user gets the same scores (test helper)."""

    name = "prefer"

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def fit(self, train, n_items):  # pragma: no cover - not trained
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.scores.expand(len(batch), -1).clone()


def test_deciles_follow_popularity_with_ties_broken_by_index() -> None:
    counts = np.array([5, 9, 9, 1, 0, 3, 7, 2, 8, 4, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8])  # 20 items: 2 per decile
    deciles = popularity_deciles(counts)
    assert deciles[[1, 2]].tolist() == [0, 0]  # the two 9s
    assert deciles[[8, 19]].tolist() == [1, 1]  # the two 8s
    assert deciles[[4, 11]].tolist() == [9, 9]  # the two 0s
    assert np.bincount(deciles).tolist() == [2] * 10


def test_interaction_shares_sum_to_one_and_favour_the_head() -> None:
    counts = np.arange(100, 0, -1)  # item 0 most popular
    shares = interaction_shares(counts)
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] == pytest.approx(sum(range(91, 101)) / counts.sum())
    assert shares == sorted(shares, reverse=True)


def test_evaluator_hook_counts_every_users_top_k_slots() -> None:
    n_items, n_users = 50, 13
    counts = np.arange(n_items, 0, -1)  # item 0 most popular; decile d holds items 5d..5d+4
    histories = csr([[49]] * n_users)
    targets = csr([[10]] * n_users)
    data = EvalSet(histories, targets)
    evaluator = FullRankingEvaluator(counts, ks=(5, 10), batch_size=4)
    head = PreferItems(-torch.arange(n_items, dtype=torch.float32))  # scores favour popular items
    counter = TopKPopularity(counts, k=10)
    evaluator.evaluate(head, data, on_top=counter)
    assert counter.counts.tolist() == [5 * n_users, 5 * n_users] + [0] * 8  # 4 blocks, all users counted
    tail = PreferItems(torch.arange(n_items, dtype=torch.float32))  # favours unpopular; 49 is seen
    shares = recommended_popularity(evaluator, tail, data, k=5)
    assert shares[9] == pytest.approx(4 / 5) and shares[8] == pytest.approx(1 / 5)


def test_k_above_the_evaluators_cut_offs_is_refused() -> None:
    evaluator = FullRankingEvaluator(np.ones(20), ks=(5,))
    data = EvalSet(csr([[0]]), csr([[1]]))
    with pytest.raises(ValueError, match="k=10"):
        recommended_popularity(evaluator, PreferItems(torch.zeros(20)), data, k=10)
