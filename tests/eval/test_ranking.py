"""The full-ranking evaluator against a slow reference written here and against torchmetrics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

from foundrec.data.sequences import Sequences
from foundrec.data.split import EvalSet
from foundrec.eval.kernels import rank_rows
from foundrec.eval.ranking import FullRankingEvaluator, target_ranks, top_items
from foundrec.models.base import DotProductRecommender, Recommender, UserBatch


class FixedScores(Recommender):
    """Scores from a stored [n_users, n_items] table (test helper)."""

    name = "fixed"

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def fit(self, train, n_items):  # pragma: no cover - not trained
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.table[batch.users].clone()


def csr(rows: list[list[int]], users: list[int]) -> Sequences:
    lengths = [len(r) for r in rows]
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([i for r in rows for i in r], dtype=np.int64),
        rows=np.array(users, dtype=np.int64),
    )


def reference(table: np.ndarray, histories, targets, k: int, exclude_seen: bool) -> dict[str, float]:
    """Plain-Python definitions from docs/evaluation.md."""
    out = {"hr": [], "recall": [], "ndcg": [], "precision": [], "f1": [], "mrr": []}
    for u, (hist, tgt) in enumerate(zip(histories, targets, strict=True)):
        scores = table[u].astype(np.float64).copy()
        if exclude_seen:
            scores[list(hist)] = -np.inf
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # stable: ties by index
        rank = {item: pos + 1 for pos, item in enumerate(order)}
        ranks = [rank[t] for t in tgt]
        hits = sum(r <= k for r in ranks)
        dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k)
        idcg = sum(1 / math.log2(i + 1) for i in range(1, min(k, len(tgt)) + 1))
        p, r = hits / k, hits / len(tgt)
        out["hr"].append(float(hits > 0))
        out["recall"].append(r)
        out["ndcg"].append(dcg / idcg)
        out["precision"].append(p)
        out["f1"].append(0.0 if hits == 0 else 2 * p * r / (p + r))
        out["mrr"].append(1 / min(ranks))
    return {name: float(np.mean(v)) for name, v in out.items()}


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_slow_reference_multi_target(exclude_seen: bool, ties: bool) -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    table = rng.normal(size=(n_users, n_items)).astype(np.float32)
    if ties:
        table = np.round(table, 0)  # many equal scores
    histories = [list(rng.choice(n_items, rng.integers(1, 8), replace=False)) for _ in range(n_users)]
    targets = [list(rng.choice(n_items, rng.integers(1, 4), replace=False)) for _ in range(n_users)]
    data = EvalSet(csr(histories, list(range(n_users))), csr(targets, list(range(n_users))))
    evaluator = FullRankingEvaluator(np.ones(n_items), ks=(5, 10), exclude_seen=exclude_seen, batch_size=7)
    got = evaluator.evaluate(FixedScores(torch.from_numpy(table)), data)
    for k in (5, 10):
        want = reference(table, histories, targets, k, exclude_seen)
        for name in ("hr", "recall", "ndcg", "precision", "f1"):
            assert got[f"{name}@{k}"] == pytest.approx(want[name], abs=1e-6), (name, k)
    assert got["mrr"] == pytest.approx(reference(table, histories, targets, 5, exclude_seen)["mrr"], abs=1e-6)
    assert got["users"] == n_users


def test_agrees_with_torchmetrics_single_target() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 64, 50
    # positive scores: torchmetrics' MRR treats a target scored <= 0 as never retrieved
    table = torch.from_numpy(np.exp(rng.normal(size=(n_users, n_items))).astype(np.float32))
    targets = rng.integers(0, n_items, n_users)
    data = EvalSet(
        csr([[] for _ in range(n_users)], list(range(n_users))),
        csr([[t] for t in targets], list(range(n_users))),
    )
    got = FullRankingEvaluator(np.ones(n_items), ks=(10,), exclude_seen=False).evaluate(
        FixedScores(table), data
    )
    target = torch.zeros(n_users, n_items, dtype=torch.bool)
    target[torch.arange(n_users), torch.from_numpy(targets)] = True
    indexes = torch.arange(n_users)[:, None].expand(-1, n_items)
    flat = (table.flatten(), target.flatten(), indexes.flatten())
    assert got["hr@10"] == pytest.approx(float(RetrievalHitRate(top_k=10)(*flat)), abs=1e-6)
    assert got["ndcg@10"] == pytest.approx(float(RetrievalNormalizedDCG(top_k=10)(*flat)), abs=1e-6)
    assert got["mrr"] == pytest.approx(float(RetrievalMRR()(*flat)), abs=1e-6)


def test_seen_items_excluded_and_switchable() -> None:
    table = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    data = EvalSet(csr([[0, 1]], [0]), csr([[2]], [0]))
    on = FullRankingEvaluator(np.ones(4), ks=(1,), exclude_seen=True).evaluate(FixedScores(table), data)
    off = FullRankingEvaluator(np.ones(4), ks=(1,), exclude_seen=False).evaluate(FixedScores(table), data)
    assert on["hr@1"] == 1.0 and on["mrr"] == 1.0
    assert off["hr@1"] == 0.0 and off["mrr"] == pytest.approx(1 / 3)


def test_ties_never_flatter_the_target() -> None:
    scores = torch.zeros(1, 6)
    assert target_ranks(scores, torch.tensor([0]), torch.tensor([4])).item() == 5
    assert target_ranks(scores, torch.tensor([0]), torch.tensor([0])).item() == 1


def test_slices_and_coverage() -> None:
    # item 0 is by far the most popular: with tail_share 0.25 of 4 items, only item 0 is "head"
    counts = np.array([100, 5, 4, 3])
    table = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    histories = [[1, 2, 3, 1, 2, 3], [0]]  # user 0 has 6 history items (not cold), user 1 has 1
    data = EvalSet(csr(histories, [0, 1]), csr([[0], [3]], [0, 1]))
    got = FullRankingEvaluator(
        counts, ks=(1,), exclude_seen=False, tail_share=0.25, cold_max_history=5
    ).evaluate(FixedScores(table), data)
    assert got["hr@1"] == 1.0
    assert got["tail/users"] == 1 and got["tail/hr@1"] == 1.0  # only user 1's target (item 3) is long-tail
    assert got["cold/users"] == 1 and got["cold/hr@1"] == 1.0
    assert got["coverage@1"] == 0.5  # items 0 and 3 recommended
    assert got["new/users"] == 0 and math.isnan(got["new/hr@1"])  # every item has training interactions


def test_new_item_slice_holds_targets_never_seen_in_training() -> None:
    counts = np.array([100, 0, 4, 0])
    table = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    data = EvalSet(csr([[2], [0], [2]], [0, 1, 2]), csr([[1, 0], [3], [2]], [0, 1, 2]))
    got = FullRankingEvaluator(counts, ks=(1,), exclude_seen=False).evaluate(FixedScores(table), data)
    assert got["new/users"] == 2  # users 0 (item 1 among its targets) and 1 (item 3)
    assert got["new/hr@1"] == 0.5  # user 0's item 1 ranks 2nd, user 1's item 3 1st


def test_nan_scores_are_an_error() -> None:
    from foundrec.errors import FoundrecError

    table = torch.tensor([[float("nan"), 1.0]])
    data = EvalSet(csr([[]], [0]), csr([[0]], [0]))
    with pytest.raises(FoundrecError, match="NaN"):
        FullRankingEvaluator(np.ones(2), ks=(1,)).evaluate(FixedScores(table), data)


def test_rank_kernel_equals_torch_reference() -> None:
    """Ties, masked seen items, several targets per row and rows without any, against plain torch."""
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=(33, 70)), 1).astype(np.float32)  # with ties
    history = csr([list(rng.integers(0, 70, rng.integers(0, 6))) for _ in range(33)], list(range(33)))
    targets = csr([list(rng.integers(0, 70, rng.integers(0, 4))) for _ in range(33)], list(range(33)))
    ranks = np.empty(targets.nnz, np.int64)
    top = np.empty((33, 20), np.int64)
    masked = torch.from_numpy(scores.copy())
    for r in range(33):
        masked[r, history.row(r)] = -torch.inf
    rows = torch.from_numpy(np.repeat(np.arange(33), targets.lengths))
    expected = target_ranks(masked, rows, torch.from_numpy(targets.items))
    for first in (0, 20):  # two blocks
        block = scores[first : first + 20].copy()
        rank_rows(block, first, history.offsets, history.items, targets.offsets, targets.items, ranks, top)
    assert np.array_equal(ranks, expected.numpy())
    stable = torch.sort(masked, dim=1, descending=True, stable=True).indices
    assert np.array_equal(top, stable[:, :20].numpy())


def test_kernels_leave_torch_thread_count_alone() -> None:
    """Starting numba's OpenMP threads resets the shared runtime to all cores; torch must not follow."""
    code = (
        "import torch; torch.set_num_threads(1); import numpy as np; "
        "from foundrec.eval.ranking import top_items; "
        "top_items(torch.rand(64, 3000), 10); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("n_items", [50, 1000, 1037])  # fewer chunks than k; whole chunks; a ragged end
def test_top_items_kernel_equals_stable_sort(n_items: int) -> None:
    generator = torch.Generator().manual_seed(n_items)
    scores = torch.round(torch.randn(40, n_items, generator=generator) * 4) / 4  # many ties
    scores[:, ::7] = -torch.inf  # masked seen items
    scores[3, :] = -torch.inf  # a row with nothing left: the first k items, in index order
    scores[4, 5:30] = torch.arange(25.0) + 100  # a row whose best items sit in one chunk
    scores[5, :] = 1.0  # all tied
    expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :20]
    assert torch.equal(top_items(scores, 20), expected)
    assert torch.equal(top_items(scores, 20)[3], torch.arange(20))


class FixedFactors(DotProductRecommender):
    """score = users @ items.T from stored factors (test helper): the evaluator's cache-blocked path."""

    name = "fixed-factors"

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        self.users, self.items = users, items

    def fit(self, train, n_items):  # pragma: no cover - not trained
        return self

    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        return self.users[batch.users]

    def item_vectors(self) -> torch.Tensor:
        return self.items


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_dot_product_path_equals_dense_scores(monkeypatch: pytest.MonkeyPatch, exclude_seen: bool) -> None:
    """Blocked ranking of a factor model == ranking its dense score table (ties included)."""
    import foundrec.eval.ranking as ranking

    monkeypatch.setattr(ranking, "ENCODE_CHUNK", 24)  # several encode chunks, each of several blocks
    rng = np.random.default_rng(5)
    n_users, n_items, dim = 90, 300, 4
    # small integers: every product is exact in float32 whatever the block shape, and ties are common
    users = torch.from_numpy(rng.integers(-2, 3, (n_users, dim)).astype(np.float32))
    items = torch.from_numpy(rng.integers(-2, 3, (n_items, dim)).astype(np.float32))
    histories = [list(rng.choice(n_items, rng.integers(0, 6), replace=False)) for _ in range(n_users)]
    targets = [list(rng.choice(n_items, rng.integers(1, 3), replace=False)) for _ in range(n_users)]
    data = EvalSet(csr(histories, list(range(n_users))), csr(targets, list(range(n_users))))
    counts = np.arange(n_items) % 7  # every 7th item never trained: the new-item slice is populated
    evaluator = FullRankingEvaluator(counts, exclude_seen=exclude_seen, batch_size=5)
    tops: dict[str, list[torch.Tensor]] = {"dense": [], "dot": []}
    dot = evaluator.evaluate(FixedFactors(users, items), data, on_top=tops["dot"].append)
    dense = evaluator.evaluate(FixedScores(users @ items.T), data, on_top=tops["dense"].append)
    assert dot == dense and dot["new/users"] > 0
    assert torch.equal(torch.cat(tops["dot"]), torch.cat(tops["dense"]))
