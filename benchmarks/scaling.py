"""Model-size scaling: validation loss and NDCG@10 against parameter count, as a table and a PNG.

    .venv/bin/python benchmarks/scaling.py [--data ml-100k] [--block sasrec] [--epochs 30]

Every size trains with the same recipe (the model's defaults, early stopping on validation NDCG@10);
the validation loss is the full-softmax cross-entropy of each user's validation item given the history.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from foundrec.config import load_config  # noqa: E402
from foundrec.data.split import EvalSet  # noqa: E402
from foundrec.experiment import VALID_METRIC, prepare  # noqa: E402
from foundrec.models import MODELS  # noqa: E402
from foundrec.models.base import UserBatch  # noqa: E402
from foundrec.train.pretrain import pretrain  # noqa: E402
from machine import machine_info  # noqa: E402

SIZES = [  # (dim, layers, heads): widths and depths a CPU can train in minutes
    (16, 1, 1),
    (32, 1, 1),
    (64, 2, 2),
    (128, 2, 2),
]


@torch.no_grad()
def validation_loss(model, data: EvalSet, block: int = 256) -> float:
    total, count = 0.0, 0
    for start in range(0, len(data), block):
        batch = UserBatch.from_sequences(data.history, start, start + block)
        targets = UserBatch.from_sequences(data.targets, start, start + block)
        logits = model.score(batch)[targets.row_ids()]
        total += float(F.cross_entropy(logits, targets.items, reduction="sum"))
        count += len(targets.items)
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--block", default="sasrec", choices=["sasrec", "hstu"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the saved JSON")
    args = parser.parse_args()
    stem = f"scaling_{args.data}_{args.block}"
    if args.replot:
        rows = json.loads((args.out / f"{stem}.json").read_text())["rows"]
        return plot(rows, args.out / f"{stem}.png", f"{args.block} on {args.data}")
    torch.set_num_threads(args.threads)
    p = prepare(load_config(None, [], model=args.block, data__dataset=args.data))
    rows = []
    for dim, layers, heads in SIZES:
        model = MODELS[args.block](dim=dim, n_layers=layers, n_heads=heads, epochs=args.epochs)
        start = time.perf_counter()
        result = pretrain(
            model,
            p.split.train,
            p.split.n_items,
            validate=lambda m: p.evaluator.evaluate(m, p.split.valid)[VALID_METRIC],
            patience=5,
        )
        row = {
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "params": model.n_parameters(),
            "valid_loss": validation_loss(model, p.split.valid),
            "valid_ndcg@10": p.evaluator.evaluate(model, p.split.valid)["ndcg@10"],
            "best_epoch": result.best_epoch,
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"rows": rows, "machine": machine_info()}, indent=2))
    plot(rows, args.out / f"{stem}.png", f"{args.block} on {args.data}")
    print("| dim | layers | heads | params | valid loss | valid NDCG@10 | best epoch | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dim']} | {r['layers']} | {r['heads']} | {r['params']:,} | {r['valid_loss']:.4f} | "
            f"{r['valid_ndcg@10']:.4f} | {r['best_epoch']} | {r['seconds']:.0f} |"
        )


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [r["params"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(params, [r["valid_loss"] for r in rows], "o-")
    left.set(xscale="log", xlabel="parameters", ylabel="validation cross-entropy", title=title)
    right.plot(params, [r["valid_ndcg@10"] for r in rows], "o-", color="tab:green")
    right.set(xscale="log", xlabel="parameters", ylabel="validation NDCG@10", title=title)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
