"""Seconds for one full-ranking evaluation pass of a dot-product model over every Beauty user and item.

    .venv/bin/python benchmarks/eval_speed.py [--dim 64] [--repeats 5]
    .venv/bin/python benchmarks/eval_speed.py --run runs/sasrec-beauty   # a trained model instead

The model is a 64-dimensional user/item embedding table (BPR's shape); its values do not change the
work. The pass is the whole evaluator: scoring, seen-item masking, ranks, top-K, metrics and slices.
`--generic` hides the factors, so the evaluator ranks the model's `score` blocks as for any model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from foundrec.config import DataConfig, RunConfig  # noqa: E402
from foundrec.data.datasets import load_dataset  # noqa: E402
from foundrec.data.split import leave_one_out, make_split  # noqa: E402
from foundrec.eval.ranking import FullRankingEvaluator  # noqa: E402
from foundrec.models.base import DotProductRecommender, Recommender, UserBatch  # noqa: E402
from machine import machine_info  # noqa: E402


class DotProduct(DotProductRecommender):
    name = "dot"

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        self.users, self.items = users, items

    def fit(self, train, n_items):  # pragma: no cover
        return self

    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        return self.users[batch.users]

    def item_vectors(self) -> torch.Tensor:
        return self.items


class ScoresOnly(Recommender):
    """The same model seen only through `score` (the evaluator's path for models without factors)."""

    name = "dot-scores"

    def __init__(self, model: Recommender) -> None:
        self.model = model

    def fit(self, train, n_items):  # pragma: no cover
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.model.score(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--generic", action="store_true", help="rank `score` blocks, not the factors")
    parser.add_argument("--run", type=Path, help="time a trained run's model (e.g. sasrec) on its own data")
    args = parser.parse_args()
    if args.run:
        cfg = RunConfig.model_validate_json((args.run / "config.json").read_text())
        s = cfg.split
        split = make_split(
            load_dataset(cfg.data).interactions, s.method, s.valid_fraction, s.test_fraction, s.new_items
        )
        model = Recommender.load(args.run / "model")
    else:
        split = leave_one_out(load_dataset(DataConfig(dataset="beauty")).interactions)
        torch.manual_seed(0)
        model = DotProduct(torch.randn(split.n_users, args.dim), torch.randn(split.n_items, args.dim))
    if args.generic:
        model = ScoresOnly(model)
    evaluator = FullRankingEvaluator(split.item_counts(), batch_size=args.batch_size)
    evaluator.evaluate(model, split.test)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        evaluator.evaluate(model, split.test)
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "users": len(split.test),
                "items": split.n_items,
                "model": model.name,
                "dim": args.dim,
                "batch_size": args.batch_size,
                "path": "score blocks" if args.generic else "factors",
                "threads": torch.get_num_threads(),
                "seconds_median": round(statistics.median(times), 3),
                "seconds_min": round(min(times), 3),
                "machine": machine_info(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
