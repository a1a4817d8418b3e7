"""Full-ranking evaluation over the whole catalogue, batched in torch; definitions in docs/evaluation.md.

A target's rank is 1 + the number of items scored higher + the number of items scored equal with a
smaller index (a stable descending sort), so ties never flatter a model and results are reproducible.
Only a [batch, n_items] block exists at a time; no all-users x all-items matrix is built.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from foundrec.data.split import EvalSet
from foundrec.errors import FoundrecError
from foundrec.models.base import DotProductRecommender, Recommender, UserBatch

RANK_METRICS = ("hr", "recall", "ndcg", "precision", "f1", "mrr")


@dataclass(frozen=True)
class FullRankingEvaluator:
    """HR/Recall/NDCG/Precision/F1/MRR@K, MRR and coverage@K, plus long-tail and cold-user slices."""

    item_counts: np.ndarray  # training interactions per item; defines the long tail
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_seen: bool = True
    batch_size: int | None = None  # users per block; None: chosen by model kind (see the *_blocks methods)
    compile: bool = True  # fused rank kernel via torch.compile (falls back to eager)
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
        """Metrics over `data`; `on_top` sees each block's [users, max(ks)] top items (for reports)."""
        n_items = len(self.item_counts)
        covered = {k: torch.zeros(n_items, dtype=torch.bool) for k in self.ks}
        ranks, rows = [], []
        blocks = (
            self._dot_product_blocks(model, data)
            if isinstance(model, DotProductRecommender)
            else self._scored_blocks(model, data)
        )
        for block_ranks, block_rows, top in blocks:
            ranks.append(block_ranks)
            rows.append(block_rows)
            if on_top is not None:
                on_top(top)
            for k in self.ks:
                covered[k][top[:, :k].flatten()] = True
        # Metrics once over all targets: per-block metric code costs more than the ranking itself.
        all_ranks, all_rows = torch.cat(ranks), torch.cat(rows)
        target_items = torch.from_numpy(data.targets.items).long()
        tail = self.tail_items()[target_items]
        n_users = len(data)
        tail_users = torch.zeros(n_users, dtype=torch.bool).index_fill_(0, all_rows[tail], True)
        cold = torch.from_numpy(data.history.lengths <= self.cold_max_history)
        per_user = per_user_metrics(all_ranks, all_rows, n_users, self.ks)
        parts = {
            "all": per_user,
            "tail": per_user_metrics(all_ranks[tail], all_rows[tail], n_users, self.ks)[tail_users],
            "cold": per_user[cold],
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
            result[f"coverage@{k}"] = float(covered[k].float().mean())
        return result

    def _scored_blocks(self, model: Recommender, data: EvalSet) -> Iterator[Block]:
        """Any model: `score` on blocks of about 16 MB, which malloc reuses."""
        n_items = len(self.item_counts)
        step = self.batch_size or max(16, (4 << 20) // n_items)
        for start in range(0, len(data), step):
            scores = model.score(UserBatch.from_sequences(data.history, start, start + step)).float()
            expected = (min(step, len(data) - start), n_items)
            if scores.shape != expected:
                raise FoundrecError(
                    f"{type(model).__name__}.score returned shape {tuple(scores.shape)}, expected {expected}"
                )
            yield self._rank_block(scores, data, start)

    def _dot_product_blocks(self, model: DotProductRecommender, data: EvalSet) -> Iterator[Block]:
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
                yield self._rank_block(users[offset : offset + step] @ items.T, data, chunk_start + offset)

    def _rank_block(self, scores: torch.Tensor, data: EvalSet, start: int) -> Block:
        """(target ranks, their user rows, [B, max(ks)] top items) of one block of users."""
        stop = start + len(scores)
        targets = UserBatch.from_sequences(data.targets, start, stop)
        if self.exclude_seen:
            seen = UserBatch.from_sequences(data.history, start, stop)
            scores[seen.row_ids(), seen.items] = -torch.inf
        target_rows = targets.row_ids()
        ranks = target_ranks(scores, target_rows, targets.items, fast=self.compile)
        return ranks, target_rows + start, top_items(scores, min(max(self.ks), scores.shape[1]))


Block = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
CACHE_BLOCK_BYTES = 4 << 20  # score block size for dot-product models; fits a server CPU's L2 or L3
ENCODE_CHUNK = 1 << 14  # users whose vectors are encoded at once, before their blocks are ranked


def metric_names(ks: tuple[int, ...]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in RANK_METRICS] + ["mrr"]


def target_ranks(
    scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor, fast: bool = False
) -> torch.Tensor:
    """1-based rank of each (row, item) target within its row of `scores`, ties broken by item index.

    `fast` runs the comparison through torch.compile: one fused pass over the block instead of four
    (about 10x faster on CPU); it falls back to eager mode where compilation is unavailable.
    """
    target = scores[rows, items]
    if torch.isnan(target).any():
        raise FoundrecError("the model produced NaN scores")
    if len(rows) == scores.shape[0] and bool((rows == torch.arange(len(rows))).all()):
        block = scores  # one target per row (leave-one-out): no copy
    else:
        block = scores[rows]
    return _compiled_rank()(block, target, items) if fast else _rank(block, target, items)


def _rank(block: torch.Tensor, target: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    index = torch.arange(block.shape[1])
    ahead = (block > target[:, None]) | ((block == target[:, None]) & (index < items[:, None]))
    return ahead.sum(1) + 1


_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}


def _compiled_rank() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """torch.compile(_rank), built once per process; after a failed compilation, `_rank` itself."""
    if "rank" not in _COMPILED:
        compiled = torch.compile(_rank, dynamic=True)

        def run(block: torch.Tensor, target: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            try:
                return compiled(block, target, items)
            except Exception as exc:  # no C++ compiler, unsupported platform, ...
                warnings.warn(
                    f"compiled ranking unavailable ({type(exc).__name__}); using eager mode", stacklevel=2
                )
                _COMPILED["rank"] = _rank
                return _rank(block, target, items)

        _COMPILED["rank"] = run
    return _COMPILED["rank"]


def top_items(scores: torch.Tensor, k: int, chunk: int = 64) -> torch.Tensor:
    """Indices of each row's k best items, best first: torch.topk over a pre-selected slice.

    Why: topk over the whole catalogue costs more than the rest of the ranking. An item in a row's
    top k lies in one of the k chunks with the highest maxima (otherwise k chunk maxima beat it), so
    only those chunks (and the ragged end) need a full topk; the chunk maxima cost one cheap pass.
    """
    rows, n = scores.shape
    full = n // chunk
    if full <= k or scores.stride(1) != 1:
        return torch.topk(scores, k, dim=1).indices
    maxima = scores.as_strided((rows, full, chunk), (scores.stride(0), chunk, 1)).amax(2)
    best = torch.topk(maxima, k, dim=1, sorted=False).indices
    columns = (best[:, :, None] * chunk + torch.arange(chunk)).view(rows, -1)
    if full * chunk < n:
        columns = torch.cat([columns, torch.arange(full * chunk, n).expand(rows, -1)], 1)
    pick = torch.topk(scores.gather(1, columns), k, dim=1).indices
    return columns.gather(1, pick)


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
