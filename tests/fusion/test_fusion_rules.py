"""RRF, Borda count, voting and weighted averaging against hand-computed values and a slow reference."""

from __future__ import annotations

import math

import pytest
import torch
from fusion_helpers import member, reference_scores, sequences

from foundrec.fusion import (
    BordaCount,
    MajorityVoting,
    ReciprocalRankFusion,
    WeightedScoreFusion,
    align,
)
from foundrec.fusion.candidates import EMPTY, TopLists, best_unseen
from foundrec.models.base import UserBatch

NEG = -math.inf
# three members, two users, six items; user 0 has seen item 3, user 1 items 0-3
A = [[0.9, 0.1, 0.5, 0.7, 0.0, 0.3], [1, 1, 1, 1, 0.2, 0.9]]
B = [[0.2, 0.8, 0.6, 0.1, 0.4, 0.0], [0, 0, 0, 0, 0.5, 0.5]]
C = [[5, 5, 1, 2, 3, 0], [0, 0, 0, 0, NEG, 1]]  # ties: item 0 before item 1; C never lists item 4 for user 1
HISTORY = [[3], [0, 1, 2, 3]]


def batch() -> UserBatch:
    return UserBatch.from_sequences(sequences(HISTORY))


def fitted(fusion):
    return fusion.fit(None, 6)


def members():
    return [member("a", A), member("b", B), member("c", C)]


def test_lists_skip_seen_items_and_order_ties_by_item() -> None:
    items, scores = best_unseen(torch.tensor(C, dtype=torch.float32), 3, batch())
    assert items.tolist() == [[0, 1, 4], [5, EMPTY, EMPTY]]  # user 1 has two unseen items, C scores one
    assert scores[0].tolist() == [5, 5, 3]


def test_union_holds_each_members_place_and_score() -> None:
    cands = fitted(BordaCount(members(), top_n=3)).candidates(batch())
    assert cands.items.tolist() == [[0, 1, 2, 4, 5], [4, 5, EMPTY, EMPTY, EMPTY]]
    assert cands.ranks[:, 0].tolist() == [[1, 0, 2, 0, 3], [0, 1, 2, 3, 0], [1, 2, 0, 3, 0]]
    assert cands.ranks[:, 1, :2].tolist() == [[2, 1], [1, 2], [0, 1]]
    assert cands.scores[1, 0, 1].item() == pytest.approx(0.8)
    assert torch.isnan(cands.scores[1, 0, 0])  # b did not list item 0


def test_reciprocal_rank_fusion_exact_values() -> None:
    scores = fitted(ReciprocalRankFusion(members(), k=60, top_n=3)).score(batch())
    expected = [
        [2 / 61, 1 / 61 + 1 / 62, 2 / 62, NEG, 2 / 63, 1 / 63],
        [NEG, NEG, NEG, NEG, 1 / 62 + 1 / 61, 1 / 61 + 1 / 62 + 1 / 61],
    ]
    torch.testing.assert_close(scores, torch.tensor(expected))


def test_borda_count_exact_values() -> None:
    scores = fitted(BordaCount(members(), top_n=3)).score(batch())
    assert scores.tolist() == [[6, 5, 4, NEG, 2, 1], [NEG, NEG, NEG, NEG, 5, 8]]


def test_majority_voting_exact_values() -> None:
    scores = fitted(MajorityVoting(members(), k=2, top_n=3)).score(batch())
    tie = 0.49 / 3  # 0.49 * mean over the three members of 1 / place
    expected = [
        [2 + tie * 2, 2 + tie * 1.5, 2 + tie * 1, NEG, tie * 2 / 3, tie / 3],
        [NEG, NEG, NEG, NEG, 2 + tie * 1.5, 3 + tie * 2.5],
    ]
    torch.testing.assert_close(scores, torch.tensor(expected))
    order = scores[0].argsort(descending=True)[:3].tolist()
    assert order == [0, 1, 2]  # three items with two votes each, by mean reciprocal place


def test_weighted_rank_normalisation_exact_values() -> None:
    fusion = fitted(WeightedScoreFusion(members(), normalization="rank", weights=[1, 2, 0], top_n=3))
    scores = fusion.score(batch())
    # user 0: a lists 0,2,5 -> 1, 2/3, 1/3; b lists 1,2,4 -> 1, 2/3, 1/3 (times 2)
    expected0 = [1, 2, 2 / 3 + 4 / 3, NEG, 2 / 3, 1 / 3]
    torch.testing.assert_close(scores[0], torch.tensor(expected0))


@pytest.mark.parametrize("top_n", [2, 4, 12])
@pytest.mark.parametrize(
    "kind, make",
    [
        ("rrf", lambda ms, n: ReciprocalRankFusion(ms, k=5, top_n=n)),
        ("borda", lambda ms, n: BordaCount(ms, top_n=n)),
        ("voting", lambda ms, n: MajorityVoting(ms, k=3, top_n=n)),
        ("rank", lambda ms, n: WeightedScoreFusion(ms, "rank", [0.5, 1.0, 2.0], top_n=n)),
        ("minmax", lambda ms, n: WeightedScoreFusion(ms, "minmax", [0.5, 1.0, 2.0], top_n=n)),
        ("zscore", lambda ms, n: WeightedScoreFusion(ms, "zscore", [0.5, 1.0, 2.0], top_n=n)),
    ],
)
def test_combiners_match_the_slow_reference(kind: str, make, top_n: int) -> None:
    gen = torch.Generator().manual_seed(top_n)
    tables = [torch.randint(0, 4, (7, 12), generator=gen).float() for _ in range(3)]  # many ties
    tables[2][1, :6] = NEG  # a member that cannot score half the catalogue for one user
    history = [[0, 5], [1], [], [2, 3, 4, 6, 7, 8, 9], [11], [0, 1, 2], [10]]
    fusion = make([member(f"m{i}", t) for i, t in enumerate(tables)], top_n).fit(None, 12)
    got = fusion.score(UserBatch.from_sequences(sequences(history)))
    k = {"rrf": 5.0, "voting": 3}.get(kind, 60.0)
    expected = reference_scores(
        kind if kind in ("rrf", "borda", "voting") else "weighted",
        tables,
        history,
        top_n,
        weights=[0.5, 1.0, 2.0],
        normalization=kind,
        k=k,
    )
    torch.testing.assert_close(got, expected)


def test_align_handles_empty_lists() -> None:
    lists = TopLists(
        torch.tensor([[[EMPTY, EMPTY]], [[3, EMPTY]]]), torch.tensor([[[NEG, NEG]], [[1.0, NEG]]])
    )
    cands = align(lists)
    assert cands.items.tolist() == [[3]]
    assert cands.ranks[:, 0].tolist() == [[0], [1]]
    nobody = align(TopLists(torch.full((2, 1, 2), EMPTY), torch.full((2, 1, 2), NEG)))
    assert nobody.items.tolist() == [[EMPTY]] and not nobody.listed.any()
