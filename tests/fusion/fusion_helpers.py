"""Fusion test helpers: members with hand-made score tables, small evaluation sets, plain-Python lists."""

from __future__ import annotations

import numpy as np
import torch

from foundrec.data.sequences import Sequences
from foundrec.data.split import EvalSet
from foundrec.fusion import Member
from foundrec.models.base import Recommender, UserBatch


class FixedScores(Recommender):
    """Scores from a stored [n_users, n_items] table."""

    name = "fixed"

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def fit(self, train: Sequences, n_items: int) -> FixedScores:  # pragma: no cover - not trained
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.table[batch.users].clone()


def member(name: str, table: list[list[float]] | torch.Tensor) -> Member:
    return Member(name, FixedScores(torch.as_tensor(table, dtype=torch.float32)))


def sequences(rows: list[list[int]]) -> Sequences:
    lengths = [len(r) for r in rows]
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([i for r in rows for i in r], dtype=np.int64),
        rows=np.arange(len(rows), dtype=np.int64),
    )


def eval_set(histories: list[list[int]], targets: list[list[int]]) -> EvalSet:
    return EvalSet(sequences(histories), sequences(targets))


def ranked_lists(table: torch.Tensor, seen: list[list[int]], n: int) -> list[list[tuple[int, float]]]:
    """Per user: the n best unseen items with their scores, best first, ties by item index (plain Python)."""
    out = []
    for user, row in enumerate(table.tolist()):
        unseen = [(i, s) for i, s in enumerate(row) if i not in seen[user] and s != float("-inf")]
        out.append(sorted(unseen, key=lambda pair: (-pair[1], pair[0]))[:n])
    return out


def reference_scores(
    kind: str,
    tables: list[torch.Tensor],
    seen: list[list[int]],
    n: int,
    weights: list[float] | None = None,
    normalization: str = "minmax",
    k: float = 60.0,
) -> torch.Tensor:
    """What each combiner should give, one user and one item at a time; -inf outside the candidates."""
    n_users, n_items = tables[0].shape
    out = torch.full((n_users, n_items), float("-inf"))
    for user in range(n_users):
        lists = [ranked_lists(t, seen, n)[user] for t in tables]
        union = sorted({i for ranked in lists for i, _ in ranked})
        for item in union:
            total = 0.0
            for m, ranked in enumerate(lists):
                places = {i: r + 1 for r, (i, _) in enumerate(ranked)}
                place = places.get(item)
                if kind == "rrf":
                    total += 1 / (k + place) if place else 0.0
                elif kind == "borda":
                    total += min(n, n_items) - place + 1 if place else 0.0
                elif kind == "voting":
                    total += (1.0 if place and place <= k else 0.0) + 0.49 * (
                        1 / place if place else 0.0
                    ) / len(tables)
                else:
                    total += (1.0 if weights is None else weights[m]) * _normalised(
                        ranked, item, normalization
                    )
            out[user, item] = total
    return out


def _normalised(ranked: list[tuple[int, float]], item: int, method: str) -> float:
    scores = dict(ranked)
    size = len(ranked)
    if method == "rank":
        places = {i: r + 1 for r, (i, _) in enumerate(ranked)}
        return (size - places[item] + 1) / size if item in places else 0.0
    values = list(scores.values())
    low, high = min(values), max(values)
    if method == "minmax":
        if item not in scores:
            return 0.0
        return (scores[item] - low) / (high - low) if high > low else 1.0
    mean = sum(values) / size
    std = (sum((v - mean) ** 2 for v in values) / size) ** 0.5
    if std == 0:
        return 0.0
    return (scores.get(item, low) - mean) / std
