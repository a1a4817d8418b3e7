"""Pretrained vs from-scratch vs baselines on ml-100k's labelled tasks (docs/benchmarks.md).

  .venv/bin/python benchmarks/finetune_ml100k.py --part a        # protocol (a): CTR table + rating RMSE
  .venv/bin/python benchmarks/finetune_ml100k.py --part b        # protocol (b): few-shot AUC, 5 seeds
  .venv/bin/python benchmarks/finetune_ml100k.py --table         # markdown tables from the JSON files

The pretrained run is `foundrec train sasrec --data ml-100k --split temporal` (made here when missing).
Every number comes from one run: validation picks the epoch (and logistic regression's C), test is read
once. Results: benchmarks/results/finetune_ml100k_{a,b}.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from foundrec.config import DataConfig, load_config
from foundrec.experiment import train_run
from foundrec.models.heads import HeadConfig
from foundrec.task_run import baseline_run, finetune_run, load_task
from foundrec.train.finetune import FinetuneConfig
from machine import machine_info

RESULTS = Path(__file__).parent / "results"
DATA = DataConfig(dataset="ml-100k")
# Protocol (a): 79k training rows in ~2k windows; small batches give enough steps per epoch.
FT_A = FinetuneConfig(lr=3e-3, backbone_lr=3e-4, epochs=15, patience=3, batch_size=64)
BASE_A = FinetuneConfig(lr=1e-3, epochs=30, patience=3, batch_size=512)
# Protocol (b): one step per epoch (batch = the whole few-shot set); patience 10 as TALLRec's trainer.
FT_B = FinetuneConfig(lr=1e-3, backbone_lr=1e-4, epochs=100, patience=10, batch_size=256, warmup=0.1)


def pretrained_run(path: Path) -> Path:
    if not (path / "metrics.json").is_file():
        cfg = load_config(
            None, ["train.threads=1"], model="sasrec", data__dataset="ml-100k", split__method="temporal"
        )
        train_run(cfg, path)
    return path


def slim(metrics: dict) -> dict:
    return {
        k: v for k, v in metrics.items() if k not in ("curve", "protocol", "finetune", "head", "pretrained")
    }


def part_a(pre: Path) -> dict:
    task, ids = load_task(DATA, "temporal")
    out: dict = {"protocol": task.describe(), "ctr": {}, "rating": {}}
    for name in ("logreg", "mlp", "deepfm"):
        out["ctr"][name] = slim(baseline_run(name, task, BASE_A))
        print(name, out["ctr"][name]["test"], flush=True)
    runs = [("scratch", HeadConfig(mode="full"), True)]
    runs += [(f"pretrained+{m}", HeadConfig(mode=m), False) for m in ("full", "lora", "adapter", "probe")]
    for label, head, scratch in runs:
        out["ctr"][label] = slim(finetune_run(pre, task, ids, head, FT_A, scratch=scratch))
        print(label, out["ctr"][label]["test"], out["ctr"][label]["params"], flush=True)
    out["rating"]["biased-mf"] = slim(baseline_run("biased-mf", task, replace(BASE_A, weight_decay=0.05)))
    out["rating"]["pretrained+full"] = slim(finetune_run(pre, task, ids, HeadConfig(task="rating"), FT_A))
    for name, m in out["rating"].items():
        print(name, m["test"], flush=True)
    return out


def part_b(pre: Path, seeds: int) -> dict:
    task, ids = load_task(DATA, "tallrec")
    out: dict = {"protocol": task.describe(), "runs": []}
    configs = [("scratch", "full", True)] + [(f"pretrained+{m}", m, False) for m in ("full", "lora", "probe")]
    for shots in (16, 64, 256):
        for label, mode, scratch in configs:
            for seed in range(seeds):
                ft = replace(FT_B, seed=seed, batch_size=shots)
                m = finetune_run(pre, task, ids, HeadConfig(mode=mode), ft, shots=shots, scratch=scratch)
                out["runs"].append({"model": label, "shots": shots, "seed": seed, **slim(m)})
                print(label, shots, seed, round(m["test"]["auc"], 4), m["best_epoch"], flush=True)
    return out


def tables() -> None:
    a = json.loads((RESULTS / "finetune_ml100k_a.json").read_text())
    print("| model | AUC | GAUC | LogLoss | accuracy | F1 | trainable / total params | best epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in a["ctr"].items():
        t, p = m["test"], m["params"]
        print(
            f"| {name} | {t['auc']:.4f} | {t['gauc']:.4f} | {t['logloss']:.4f} | {t['accuracy']:.4f} | "
            f"{t['f1']:.4f} | {p['trainable']:,} / {p['total']:,} ({p['trainable_share']:.1%}) | "
            f"{m.get('best_epoch', '-')} |"
        )
    print("\n| rating model | RMSE | MAE |\n|---|---|---|")
    for name, m in a["rating"].items():
        print(f"| {name} | {m['test']['rmse']:.4f} | {m['test']['mae']:.4f} |")
    path = RESULTS / "finetune_ml100k_b.json"
    if path.is_file():
        runs = json.loads(path.read_text())["runs"]
        print("\n| model | 16 shots | 64 shots | 256 shots |\n|---|---|---|---|")
        for label in dict.fromkeys(r["model"] for r in runs):
            cells = []
            for shots in (16, 64, 256):
                aucs = [r["test"]["auc"] for r in runs if r["model"] == label and r["shots"] == shots]
                cells.append(f"{np.mean(aucs):.4f} ± {np.std(aucs):.4f} (n={len(aucs)})" if aucs else "-")
            print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["a", "b"])
    parser.add_argument("--pretrained", type=Path, default=Path("runs/sasrec-ml100k-temporal"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        tables()
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    pre = pretrained_run(args.pretrained)
    result = part_a(pre) if args.part == "a" else part_b(pre, args.seeds)
    pre_metrics = json.loads((pre / "metrics.json").read_text())
    result.update(
        machine=machine_info(),
        pretrained={
            "run": str(pre),
            "data_window": pre_metrics["data_window"],
            "test_ndcg@10": pre_metrics["test"]["ndcg@10"],
        },
        seconds=time.perf_counter() - start,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"finetune_ml100k_{args.part}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
