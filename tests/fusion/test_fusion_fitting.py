"""Candidate path versus dense scores, validation-fitted weights, stacking, metrics from candidates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fusion_helpers import eval_set, member, sequences

from foundrec.data.split import Split
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.fusion import (
    MajorityVoting,
    Member,
    ReciprocalRankFusion,
    StackingFusion,
    WeightedScoreFusion,
    candidate_metrics,
)
from foundrec.models import ItemKNN, Popularity
from foundrec.models.base import UserBatch


def dense_normalised(table: torch.Tensor, seen: list[list[int]], method: str) -> torch.Tensor:
    """Normalisation over every unseen item of a full score row; seen items -inf."""
    out = torch.full_like(table, -torch.inf)
    for user, row in enumerate(table):
        unseen = torch.ones(len(row), dtype=torch.bool)
        unseen[seen[user]] = False
        s = row[unseen]
        if method == "rank":  # stable descending order, ties by item index
            place = torch.empty(len(s))
            place[torch.argsort(-s, stable=True)] = torch.arange(1, len(s) + 1).float()
            value = (len(s) - place + 1) / len(s)
        elif method == "minmax":
            value = (s - s.min()) / (s.max() - s.min())
        else:
            value = (s - s.mean()) / s.std(unbiased=False)
        out[user, unseen] = value
    return out


@pytest.mark.parametrize("method", ["rank", "minmax", "zscore"])
def test_candidate_path_equals_dense_scores_when_lists_hold_the_catalogue(method: str) -> None:
    gen = torch.Generator().manual_seed(3)
    tables = [torch.randn(9, 40, generator=gen) for _ in range(3)]
    history = [[0, 1, 2], [5], [39, 38], [7, 8, 9, 10], [20], [3], [4, 30], [11], [12, 13]]
    weights = [0.2, 1.0, 0.7]
    fusion = WeightedScoreFusion(
        [member(f"m{i}", t) for i, t in enumerate(tables)], method, weights, top_n=40
    ).fit(None, 40)
    got = fusion.score(UserBatch.from_sequences(sequences(history)))
    dense = sum(w * dense_normalised(t, history, method) for w, t in zip(weights, tables, strict=True))
    torch.testing.assert_close(got, dense)


def oracle_and_noise(n_users: int = 60, n_items: int = 30) -> tuple[list[Member], object]:
    """An 'oracle' member that puts each user's target 2nd, and a 'noise' one that puts it last."""
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, n_items, (n_users,), generator=gen)
    oracle = torch.rand(n_users, n_items, generator=gen)
    oracle[torch.arange(n_users), targets] = 1.5
    oracle[torch.arange(n_users), (targets + 1) % n_items] = 2.0
    noise = torch.rand(n_users, n_items, generator=gen)
    noise[torch.arange(n_users), targets] = -1.0
    data = eval_set([[] for _ in range(n_users)], [[int(t)] for t in targets])
    return [member("noise", noise), member("oracle", oracle)], data


def test_weight_fitting_prefers_the_better_member() -> None:
    members, valid = oracle_and_noise()
    fusion = WeightedScoreFusion(members, "rank", top_n=10).fit(None, 30).fit_validation(valid)
    noise_weight, oracle_weight = fusion.weights_
    assert oracle_weight == 1.0 and noise_weight == 0.0  # any weight on noise pushes targets down
    ideal_second = 1 / np.log2(3)
    assert fusion.valid_ndcg_ == pytest.approx(ideal_second)
    equal = WeightedScoreFusion(members, "rank", top_n=10).fit(None, 30)
    assert candidate_metrics(equal.fuse, equal.top_lists_of(valid), valid.targets)["ndcg@10"] < ideal_second


def test_fitted_weights_beat_both_members_when_they_know_different_users() -> None:
    """Member a is right for the first half of the users, b for the second: only the mix is right for all."""
    n_users, n_items = 40, 20
    gen = torch.Generator().manual_seed(1)
    targets = torch.randint(0, n_items, (n_users,), generator=gen)
    a, b = torch.rand(n_users, n_items, generator=gen), torch.rand(n_users, n_items, generator=gen)
    half = torch.arange(n_users) < n_users // 2
    rows = torch.arange(n_users)
    a[rows[half], targets[half]] = 5.0  # a is sure for its half, and flat elsewhere
    b[rows[~half], targets[~half]] = 5.0
    valid = eval_set([[] for _ in range(n_users)], [[int(t)] for t in targets])
    members = [member("a", a), member("b", b)]
    fusion = WeightedScoreFusion(members, "zscore", top_n=20).fit(None, n_items).fit_validation(valid)
    single = [
        candidate_metrics(lambda c, m=m: -c.ranks[m].float(), fusion.top_lists_of(valid), valid.targets)
        for m in range(2)
    ]
    assert fusion.valid_ndcg_ > max(s["ndcg@10"] for s in single) + 0.2


@pytest.fixture(scope="module")
def trained(small_split: Split) -> list[Member]:
    pop = Popularity().fit(small_split.train, small_split.n_items)
    knn = ItemKNN(neighbours=50).fit(small_split.train, small_split.n_items)
    return [Member("pop", pop), Member("knn", knn)]


@pytest.mark.parametrize(
    "make",
    [
        lambda ms: WeightedScoreFusion(ms, "zscore", top_n=25),
        lambda ms: ReciprocalRankFusion(ms, top_n=25),
        lambda ms: MajorityVoting(ms, k=10, top_n=25),
        lambda ms: StackingFusion(ms, negatives=10, top_n=25),
    ],
)
def test_candidate_metrics_equal_the_full_ranking_evaluator(make, trained, small_split: Split) -> None:
    fusion = make(trained).fit(small_split.train, small_split.n_items).fit_validation(small_split.valid)
    evaluator = FullRankingEvaluator(small_split.item_counts(), ks=(5, 10))
    full = evaluator.evaluate(fusion, small_split.test)
    fast = candidate_metrics(
        fusion.fuse, fusion.top_lists_of(small_split.test), small_split.test.targets, (5, 10)
    )
    for key in ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "mrr@10"):
        assert fast[key] == pytest.approx(full[key], abs=1e-6)


def test_weighted_fusion_is_not_worse_than_its_best_member_on_validation(trained, small_split: Split) -> None:
    fusion = WeightedScoreFusion(trained, "minmax", top_n=50).fit(small_split.train, small_split.n_items)
    fusion.fit_validation(small_split.valid)
    evaluator = FullRankingEvaluator(small_split.item_counts(), ks=(10,))
    members = [evaluator.evaluate(m.model, small_split.valid)["ndcg@10"] for m in trained]
    assert fusion.valid_ndcg_ >= max(members) - 1e-9
    assert evaluator.evaluate(fusion, small_split.valid)["ndcg@10"] == pytest.approx(fusion.valid_ndcg_)


def test_stacking_weighs_the_informative_member() -> None:
    members, valid = oracle_and_noise(n_users=300)
    stacking = StackingFusion(members, negatives=10, top_n=10)
    stacking.fit(sequences([[0]] * 300), 30).fit_validation(valid)
    coef = dict(zip(stacking.feature_names(), stacking.coef_, strict=True))
    assert coef["oracle/listed"] + coef["oracle/minmax"] > coef["noise/listed"] + coef["noise/minmax"]
    ndcg = candidate_metrics(stacking.fuse, stacking.top_lists_of(valid), valid.targets)["ndcg@10"]
    assert ndcg > 0.5
