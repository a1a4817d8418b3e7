"""Summarise sequential-model runs (several seeds) beside RecBole's SASRec: accuracy, speed, time-to-accuracy.

    .venv/bin/foundrec train sasrec --data beauty --set train.seed=S --out runs/sasrec-beauty-S   # per seed
    .venv/bin/python benchmarks/sequential_summary.py runs/sasrec-beauty-* \\
        --recbole benchmarks/recbole/results/recbole_sasrec.json --out benchmarks/results/sasrec_beauty.json

Time-to-accuracy: wall-clock seconds (training + validation passes) until a run's validation NDCG@10
first reaches the best validation NDCG@10 RecBole reached, for both tools.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr", "tail/ndcg@10", "cold/ndcg@10", "coverage@10")


def time_to(epochs: list[dict], target: float) -> float | None:
    elapsed = 0.0
    for e in epochs:
        elapsed += e["seconds"] + e.get("valid_seconds", 0.0)
        if e["valid"] >= target:
            return elapsed
    return None


def mean_spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v == v]  # NaN: a slice with no users
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def emit(summary: dict, out: Path | None) -> None:
    """Print the summary as JSON and write it to `out` when given."""
    text = json.dumps(summary, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--recbole", type=Path, help="JSON written by benchmarks/recbole/run_recbole.py")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    for folder in args.runs:
        metrics = json.loads((folder / "metrics.json").read_text())
        epochs = json.loads((folder / "epochs.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        runs.append(
            {"folder": str(folder), "seed": config["train"]["seed"], "metrics": metrics, "epochs": epochs}
        )
    summary: dict = {"runs": len(runs), "machine": machine_info()}
    summary["test"] = {m: mean_spread([r["metrics"]["test"][m] for r in runs]) for m in METRICS}
    summary["valid_ndcg@10"] = mean_spread([r["metrics"]["valid"]["ndcg@10"] for r in runs])
    summary["seconds_per_epoch"] = mean_spread([r["metrics"]["seconds_per_epoch"] for r in runs])
    summary["eval_seconds"] = mean_spread([r["metrics"]["eval_seconds"] for r in runs])
    summary["best_epoch"] = [r["metrics"]["best_epoch"] for r in runs]
    summary["params"] = runs[0]["metrics"]["params"]
    summary["work"] = runs[0]["metrics"].get("work", {})
    if args.recbole:
        peer = json.loads(args.recbole.read_text())
        target = peer["best_valid_ndcg@10"]
        summary["recbole"] = {
            "test": {m: peer["test"].get(m) for m in METRICS if m in peer["test"]},
            "best_valid_ndcg@10": target,
            "seconds_per_epoch": peer["seconds_per_epoch"],
            "eval_seconds": peer["eval_seconds"],
            "seconds_to_best_valid": peer["best_valid_available_at_seconds"],
            "epochs": peer["epochs"],
        }
        summary["seconds_to_recbole_best_valid"] = [time_to(r["epochs"], target) for r in runs]
    emit(summary, args.out)


if __name__ == "__main__":
    main()
