"""Full-ranking evaluation over the whole catalogue, in blocks of users; definitions in docs/evaluation.md.

A target's rank is 1 + the number of items scored higher + the number of items scored equal with a
smaller index (a stable descending sort), so ties never flatter a model and results are reproducible.
Only a [batch, n_items] block exists at a time; no all-users x all-items matrix is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from foundrec.data.split import EvalSet
from foundrec.errors import FoundrecError
from foundrec.eval import kernels
from foundrec.models.base import DotProductRecommender, Recommender, UserBatch

RANK_METRICS = ("hr", "recall", "ndcg", "precision", "f1", "mrr")


@dataclass(frozen=True)
class FullRankingEvaluator:
    """HR/Recall/NDCG/Precision/F1/MRR@K, MRR and coverage@K, plus long-tail, cold-user and new-item
    (no training interaction) slices."""

    item_counts: np.ndarray  # training interactions per item; defines the long tail
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_seen: bool = True
    batch_size: int | None = None  # users per block; None: chosen by model kind (see the *_blocks methods)
    tail_share: float = 0.2
    cold_max_history: int = 5

    def tail_items(self) -> torch.Tensor:
        """Bool [n_items]: outside the `tail_share` most popular items (ties broken by index)."""
        n = len(self.item_counts)
        order = np.argsort(-self.item_counts, kind="stable")
        tail = np.ones(n, dtype=bool)
        tail[order[: math.ceil(self.tail_share * n)]] = False
        return torch.from_numpy(tail)

    @torch.no_grad()
    def evaluate(
        self, model: Recommender, data: EvalSet, on_top: Callable[[torch.Tensor], None] | None = None
    ) -> dict[str, float]:
        """Metrics over `data`; `on_top` sees the [users, max(ks)] top items of every user (for reports)."""
        n_items, n_users = len(self.item_counts), len(data)
        ranks = np.empty(data.targets.nnz, np.int64)
        top = np.empty((n_users, min(max(self.ks), n_items)), np.int64)
        seen_offsets = data.history.offsets if self.exclude_seen else np.zeros(n_users + 1, np.int64)
        blocks = (
            self._dot_product_blocks(model, data)
            if isinstance(model, DotProductRecommender)
            else self._scored_blocks(model, data)
        )
        for start, scores in blocks:
            kernels.rank_rows(
                scores.float().contiguous().numpy(), start, seen_offsets, data.history.items,
                data.targets.offsets, data.targets.items, ranks, top,
            )  # fmt: skip
        if (ranks == 0).any():
            raise FoundrecError(f"{type(model).__name__} produced NaN scores")
        tops = torch.from_numpy(top)
        if on_top is not None:
            on_top(tops)
        all_ranks = torch.from_numpy(ranks)
        all_rows = torch.from_numpy(data.targets.row_ids())
        target_items = torch.from_numpy(data.targets.items).long()
        cold = torch.from_numpy(data.history.lengths <= self.cold_max_history)
        per_user = per_user_metrics(all_ranks, all_rows, n_users, self.ks)

        def target_slice(items: torch.Tensor) -> torch.Tensor:
            """Metrics of each user's targets among `items` (bool [n_items]), for users with one."""
            keep = items[target_items]
            users = torch.zeros(n_users, dtype=torch.bool).index_fill_(0, all_rows[keep], True)
            return per_user_metrics(all_ranks[keep], all_rows[keep], n_users, self.ks)[users]

        parts = {
            "all": per_user,
            "tail": target_slice(self.tail_items()),
            "cold": per_user[cold],
            "new": target_slice(torch.from_numpy(self.item_counts == 0)),
        }
        result: dict[str, float] = {}
        for prefix, values in parts.items():
            means = values.double().mean(0) if len(values) else torch.full((values.shape[1],), float("nan"))
            tag = "" if prefix == "all" else f"{prefix}/"
            result.update(
                {f"{tag}{name}": float(v) for name, v in zip(metric_names(self.ks), means, strict=True)}
            )
            result[f"{tag}users"] = len(values)
        for k in self.ks:
            covered = torch.zeros(n_items, dtype=torch.bool)
            covered[tops[:, :k].flatten()] = True
            result[f"coverage@{k}"] = float(covered.float().mean())
        return result

    def _scored_blocks(self, model: Recommender, data: EvalSet) -> Iterator[tuple[int, torch.Tensor]]:
        """Any model: (first row, `score` block) on blocks of about 16 MB, which malloc reuses."""
        n_items = len(self.item_counts)
        step = self.batch_size or max(16, (4 << 20) // n_items)
        for start in range(0, len(data), step):
            scores = model.score(UserBatch.from_sequences(data.history, start, start + step))
            expected = (min(step, len(data) - start), n_items)
            if scores.shape != expected:
                raise FoundrecError(
                    f"{type(model).__name__}.score returned shape {tuple(scores.shape)}, expected {expected}"
                )
            yield start, scores

    def _dot_product_blocks(
        self, model: DotProductRecommender, data: EvalSet
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """score = user vectors @ item vectors.T, in blocks of about 4 MB, which stay in the CPU's cache.

        Why: the product is the bulk of a pass, and blocks that spill to memory make it memory-bound
        (Beauty: 1.1 GB of scores per pass). User vectors are encoded beforehand in large chunks, as
        encoders prefer, so the block size serves the product and the ranking alone.
        """
        n_items = len(self.item_counts)
        items = model.item_vectors().float()
        step = self.batch_size or max(8, CACHE_BLOCK_BYTES // (4 * n_items))
        chunk = max(step, ENCODE_CHUNK // step * step)
        for chunk_start in range(0, len(data), chunk):
            histories = UserBatch.from_sequences(data.history, chunk_start, chunk_start + chunk)
            users = model.user_vectors(histories).float()
            for offset in range(0, len(users), step):
                yield chunk_start + offset, users[offset : offset + step] @ items.T


CACHE_BLOCK_BYTES = 4 << 20  # score block size for dot-product models; fits a server CPU's L2 or L3
ENCODE_CHUNK = 1 << 14  # users whose vectors are encoded at once, before their blocks are ranked


def metric_names(ks: tuple[int, ...]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in RANK_METRICS] + ["mrr"]


def target_ranks(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """1-based rank of each (row, item) target within its row of `scores`, ties broken by item index.

    Plain torch, for small blocks (fused candidate lists); the evaluator's kernel does the same per
    block of the whole catalogue and is tested against this.
    """
    target = scores[rows, items]
    if torch.isnan(target).any():
        raise FoundrecError("the model produced NaN scores")
    block = scores[rows]
    index = torch.arange(block.shape[1])
    ahead = (block > target[:, None]) | ((block == target[:, None]) & (index < items[:, None]))
    return ahead.sum(1) + 1


def top_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's k best items, best first, equal scores in index order (a stable sort)."""
    return torch.from_numpy(kernels.top_k(scores.detach().float().contiguous().numpy(), k))


def per_user_metrics(
    ranks: torch.Tensor, rows: torch.Tensor, n_users: int, ks: tuple[int, ...]
) -> torch.Tensor:
    """[n_users, n_metrics] in `metric_names` order; users without targets get zeros."""
    n_targets = torch.zeros(n_users).index_add_(0, rows, torch.ones(len(rows)))
    best = torch.full((n_users,), float("inf")).scatter_reduce(0, rows, ranks.float(), "amin")
    gains = 1.0 / torch.log2(ranks.float() + 1.0)
    columns = []
    for k in ks:
        hit = (ranks <= k).float()
        hits = torch.zeros(n_users).index_add_(0, rows, hit)
        dcg = torch.zeros(n_users).index_add_(0, rows, hit * gains)
        ideal = _ideal_dcg(k)[torch.clamp(n_targets.long(), max=k)]
        recall = hits / n_targets.clamp(min=1)
        precision = hits / k
        f1 = torch.where(hits > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
        mrr_k = torch.where(best <= k, 1.0 / best, 0.0)
        columns += [(hits > 0).float(), recall, dcg / ideal.clamp(min=1e-12), precision, f1, mrr_k]
    columns.append(torch.where(torch.isfinite(best), 1.0 / best, 0.0))
    return torch.stack(columns, dim=1)


def _ideal_dcg(k: int) -> torch.Tensor:
    """ideal[t] = DCG of t hits at the top, t = 0..k."""
    return torch.cat([torch.zeros(1), torch.cumsum(1.0 / torch.log2(torch.arange(2, k + 2).float()), 0)])
