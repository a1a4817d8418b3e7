"""Summarise ids-only or ids+text SASRec runs over seeds, with the long-tail slice and a rare-item slice.

    .venv/bin/foundrec train sasrec --data ml-100k --set model.text=true --set train.patience=10 \\
        --set train.seed=S --set train.threads=1 --out runs/ml100k-text-S                        # per seed
    .venv/bin/python benchmarks/text_tail_summary.py runs/ml100k-text-* \\
        --out benchmarks/results/sasrec_ml100k_ids_text.json

Rare-item slices: users whose target item has at most `--rare N` training interactions, the items an id
embedding has barely seen (`--rare 0`: new items, e.g. with `--set split.new_items=0.1`; the evaluator's
`new/` slice holds the same users). The evaluator has no slice for N > 0 (its slices are the long tail,
cold users and new items), so they are computed here from each saved model, on validation and on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from foundrec.config import RunConfig
from foundrec.eval.ranking import target_ranks
from foundrec.experiment import prepare
from foundrec.models import Recommender, UserBatch

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402
from sequential_summary import emit, mean_spread  # noqa: E402

TEST = ("ndcg@10", "hr@10", "ndcg@20", "mrr", "tail/ndcg@10", "tail/hr@10", "cold/ndcg@10", "coverage@10")
VALID = ("ndcg@10", "hr@10", "tail/ndcg@10", "tail/hr@10")


@torch.no_grad()
def rare_slice(model: Recommender, data, counts: torch.Tensor, rare: int) -> dict[str, float]:
    """NDCG@10, HR@10 and the median target rank over users whose leave-one-out target has <= `rare`
    training interactions."""
    batch = UserBatch.from_sequences(data.history)
    targets = torch.from_numpy(data.targets.items).long()
    scores = model.score(batch).float()
    scores[batch.row_ids(), batch.items] = -torch.inf
    ranks = target_ranks(scores, torch.arange(len(targets)), targets).float()
    keep = counts[targets] <= rare
    hit = (ranks[keep] <= 10).float()
    ndcg = hit / torch.log2(ranks[keep] + 1)
    users = int(keep.sum())
    nan = float("nan")
    return {
        "ndcg@10": float(ndcg.mean()) if users else nan,
        "hr@10": float(hit.mean()) if users else nan,
        "median_rank": float(ranks[keep].median()) if users else nan,  # out of the whole catalogue
        "users": users,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rare", type=int, nargs="+", default=[5, 20], help="slices: targets with <= N")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for folder in args.runs:
        cfg = RunConfig.model_validate_json((folder / "config.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        p = prepare(cfg)
        model = Recommender.load(folder / "model")
        counts = torch.as_tensor(p.split.item_counts())
        rare = {
            f"le{n}/{part}": rare_slice(model, getattr(p.split, part), counts, n)
            for n in args.rare
            for part in ("valid", "test")
        }
        runs.append(
            {
                "folder": str(folder),
                "seed": cfg.train.seed,
                "params": cfg.params,
                "split": cfg.split.model_dump(),
                "metrics": metrics,
            }
        )
        runs[-1]["rare"] = rare
        print(
            folder,
            f"valid tail {metrics['valid']['tail/ndcg@10']:.4f}",
            f"test tail {metrics['test']['tail/ndcg@10']:.4f}",
        )
    summary: dict = {"runs": len(runs), "seeds": [r["seed"] for r in runs], "params": runs[0]["params"]}
    summary["split"] = runs[0]["split"]
    summary["machine"] = machine_info()
    summary["test"] = {m: mean_spread([r["metrics"]["test"][m] for r in runs]) for m in TEST}
    summary["valid"] = {m: mean_spread([r["metrics"]["valid"][m] for r in runs]) for m in VALID}
    summary["valid_ndcg@10"] = summary["valid"]["ndcg@10"]  # the key sequential_summary.py writes
    summary["tail_users"] = {p: runs[0]["metrics"][p]["tail/users"] for p in ("valid", "test")}
    summary["rare_items"] = {  # "le5/test": test users whose target has <= 5 training interactions
        key: {
            "ndcg@10": mean_spread([r["rare"][key]["ndcg@10"] for r in runs]),
            "hr@10": mean_spread([r["rare"][key]["hr@10"] for r in runs]),
            "median_rank": mean_spread([r["rare"][key]["median_rank"] for r in runs]),
            "users": runs[0]["rare"][key]["users"],
        }
        for key in runs[0]["rare"]
    }
    summary["per_seed"] = [
        {
            "seed": r["seed"],
            "best_epoch": r["metrics"]["best_epoch"],
            "valid_tail_ndcg@10": r["metrics"]["valid"]["tail/ndcg@10"],
            "test_tail_ndcg@10": r["metrics"]["test"]["tail/ndcg@10"],
            "test_ndcg@10": r["metrics"]["test"]["ndcg@10"],
            "rare": r["rare"],
        }
        for r in runs
    ]
    summary["seconds_per_epoch"] = mean_spread([r["metrics"]["seconds_per_epoch"] for r in runs])
    summary["best_epoch"] = [r["metrics"]["best_epoch"] for r in runs]
    summary["n_parameters"] = runs[0]["metrics"]["params"]
    emit(summary, args.out)


if __name__ == "__main__":
    main()
