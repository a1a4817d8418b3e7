"""Pretrained vs from-scratch vs baselines on ml-100k's labelled tasks (docs/benchmarks.md).

  .venv/bin/python benchmarks/finetune_ml100k.py --part a        # protocol (a): CTR table + rating RMSE
  .venv/bin/python benchmarks/finetune_ml100k.py --part b        # protocol (b): few-shot AUC, 5 seeds
  .venv/bin/python benchmarks/finetune_ml100k.py --table         # markdown tables from the JSON files
  .venv/bin/python benchmarks/finetune_ml100k.py --bootstrap     # GAUC differences over resampled users

The pretrained run is `foundrec train sasrec --data ml-100k --split temporal` (made here when missing).
Every number comes from one run: validation picks the epoch (and logistic regression's C), test is read
once. Results: benchmarks/results/finetune_ml100k_{a,b}.json, rewritten after every run; a rerun skips
the runs already there, so a killed benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from foundrec.config import DataConfig, load_config
from foundrec.data.labeled import TaskData
from foundrec.eval.classification import auc, gauc, rating_metrics
from foundrec.experiment import train_run
from foundrec.models.heads import HeadConfig
from foundrec.task_run import baseline_run, finetune_run, load_pretrained, load_task, logreg_on, score_rows
from foundrec.train.finetune import FinetuneConfig
from machine import machine_info

RESULTS = Path(__file__).parent / "results"
DATA = DataConfig(dataset="ml-100k")
# Protocol (a): 79k training rows in ~2k windows; small batches give enough steps per epoch.
FT_A = FinetuneConfig(lr=3e-3, backbone_lr=3e-4, epochs=15, patience=3, batch_size=64)
BASE_A = FinetuneConfig(lr=1e-3, epochs=30, patience=3, batch_size=512)
SEEDS_A = 3  # scratch and pretrained+full: the claim rests on their difference
# Protocol (b): one step per epoch (batch = the whole few-shot set); patience 10 as TALLRec's trainer,
# at least 30 steps; the 3-weight prior path (models/heads.py). Chosen on validation AUC (docs).
FT_B = FinetuneConfig(
    lr=3e-3, backbone_lr=1e-3, epochs=100, patience=10, min_epochs=30, batch_size=256, warmup=0.1
)
HEAD_B = HeadConfig(prior=True)
SHOTS = (16, 64, 256)
# LoRA on the blocks and the item table, rank 1: with the 16-wide head it trains under 5% of the whole
# model and matched full fine-tuning on protocol (a)'s validation AUC (docs).
LORA_ITEMS = HeadConfig(mode="lora", lora_rank=1, lora_alpha=2.0, lora_items=True)
# Within-user ranking term (models/heads.py): weight 1.0 is the smallest of {0.3, 1.0} whose validation
# GAUC reached logistic regression's (0.6938 vs 0.6933), at 2 points of validation AUC (docs).
RANK_A = HeadConfig(rank_weight=1.0)
# The GAUC operating point: the history's like rate as input, item biases from a logistic regression's
# item part, ranking weight 2 (validation GAUC over {1, 2, 3}: 0.6922 / 0.6946 / 0.6925; docs).
GAUC_A = HeadConfig(rank_weight=2.0, user_rate=True, bias_logreg=True)

Job = tuple[str, Callable[[], dict]]


def pretrained_run(path: Path) -> Path:
    if not (path / "metrics.json").is_file():
        cfg = load_config(
            None, ["train.threads=1"], model="sasrec", data__dataset="ml-100k", split__method="temporal"
        )
        train_run(cfg, path)
    return path


def slim(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("curve", "protocol", "pretrained")}


def jobs_a(pre: Path) -> Iterator[Job]:
    """Runs in priority order (the seeds behind the pretrained-vs-scratch claim first); key = model/seed."""
    task, ids = load_task(DATA, "temporal")

    def tuned(label: str, head: HeadConfig, scratch: bool, seed: int) -> Job:
        ft = replace(FT_A, seed=seed)
        return f"ctr/{label}/{seed}", lambda: finetune_run(pre, task, ids, head, ft, scratch=scratch)

    for seed in range(SEEDS_A):
        yield tuned("scratch", HeadConfig(), True, seed)
        yield tuned("pretrained+full", HeadConfig(), False, seed)
    for seed in range(SEEDS_A):
        yield tuned("pretrained+lora+items", LORA_ITEMS, False, seed)
    for mode in ("lora", "adapter", "probe"):
        yield tuned(f"pretrained+{mode}", HeadConfig(mode=mode), False, 0)
    for name in ("logreg", "mlp", "deepfm"):
        yield f"ctr/{name}/0", lambda name=name: baseline_run(name, task, BASE_A)
    rating = replace(BASE_A, weight_decay=0.05)
    yield "rating/biased-mf/0", lambda: baseline_run("biased-mf", task, rating)
    yield "rating/pretrained+full/0", lambda: finetune_run(pre, task, ids, HeadConfig(task="rating"), FT_A)
    yield "rating/biased-mf-tuned/0", lambda: tuned_mf(task)
    yield "rating/train-mean/0", lambda: constant_rating(task)
    for seed in range(SEEDS_A):  # protocol (b)'s prior path, on all labels
        yield tuned("scratch+prior", HeadConfig(prior=True), True, seed)
        yield tuned("pretrained+full+prior", HeadConfig(prior=True), False, seed)
    for seed in range(SEEDS_A):  # the within-user ranking term: GAUC traded against AUC (docs)
        yield tuned("scratch+rank", RANK_A, True, seed)
        yield tuned("pretrained+full+rank", RANK_A, False, seed)
    for seed in range(SEEDS_A):
        yield tuned("scratch+gauc", GAUC_A, True, seed)
        yield tuned("pretrained+full+gauc", GAUC_A, False, seed)
    for seed in range(SEEDS_A):  # the mode validation picks at that point (docs)
        yield tuned("pretrained+lora+gauc", replace(GAUC_A, mode="lora"), False, seed)
    for seed in range(SEEDS_A, 5):  # its margins are small: two more seeds of the pair
        yield tuned("scratch+gauc", GAUC_A, True, seed)
        yield tuned("pretrained+lora+gauc", replace(GAUC_A, mode="lora"), False, seed)
    for seed in range(SEEDS_A):  # `user_rate` alone, on the default (AUC) head
        yield tuned("scratch+rate", HeadConfig(user_rate=True), True, seed)
        yield tuned("pretrained+full+rate", HeadConfig(user_rate=True), False, seed)
    for seed in range(1, SEEDS_A):  # the other modes' seeds last: their rows are not the main claim
        for mode in ("lora", "adapter", "probe"):
            yield tuned(f"pretrained+{mode}", HeadConfig(mode=mode), False, seed)


def constant_rating(task: TaskData) -> dict:
    """Every rating predicted as the training mean: the floor every rating model must beat."""
    ev, mean = task.events, float(task.events.ratings[task.train].mean())
    metrics = {
        part: rating_metrics(ev.ratings[rows], np.full(len(rows), mean))
        for part, rows in (("valid", task.valid), ("test", task.test))
    }
    return {**metrics, "protocol": task.describe(), "params": {"trainable": 1, "total": 1}}


def tuned_mf(task: TaskData) -> dict:
    """Biased MF with its learning rate and weight decay picked on validation RMSE (a fairer baseline)."""
    grid = [(lr, wd) for wd in (0.05, 0.5, 2.0) for lr in (1e-3, 1e-2)]
    runs = [baseline_run("biased-mf", task, replace(BASE_A, lr=lr, weight_decay=wd)) for lr, wd in grid]
    best = min(runs, key=lambda m: m["valid"]["rmse"])
    best["grid"] = [
        {"lr": lr, "weight_decay": wd, "valid_rmse": m["valid"]["rmse"]}
        for (lr, wd), m in zip(grid, runs, strict=True)
    ]
    return best


def jobs_b(pre: Path, seeds: int) -> Iterator[Job]:
    task, ids = load_task(DATA, "tallrec")
    configs = [("scratch", HEAD_B, True)]
    configs += [(f"pretrained+{m}", replace(HEAD_B, mode=m), False) for m in ("full", "lora", "probe")]
    configs.append(("pretrained, no training", replace(HEAD_B, mode="probe"), False))  # the starting point
    configs.append(("pretrained+lora+items", replace(LORA_ITEMS, prior=True), False))
    for shots in SHOTS:
        for seed in range(seeds):
            for label, head, scratch in configs:
                epochs = 0 if label.endswith("no training") else FT_B.epochs
                ft = replace(FT_B, seed=seed, batch_size=shots, epochs=epochs)
                yield (
                    f"ctr/{label}/{shots}/{seed}",
                    lambda ft=ft, head=head, scratch=scratch, shots=shots: finetune_run(
                        pre, task, ids, head, ft, shots=shots, scratch=scratch
                    ),
                )


def like_share_auc(task: TaskData) -> dict[str, float]:
    """AUC of the history's like share alone, with no model: how much of (b) one input feature explains."""
    ev, out = task.events, {}
    for part in ("valid", "test"):
        rows = getattr(task, part)
        share = ev.labels[rows[:, None] - np.arange(1, task.history + 1)].mean(1)
        out[part] = auc(ev.labels[rows], share)
    return out


def gauc_bootstrap(pre: Path, resamples: int = 1000) -> dict:
    """Protocol (a), seed 0: test GAUC of the GAUC point's pretrained LoRA minus logistic regression's and
    minus scratch's, over test users resampled with replacement (is the difference more than chance?)."""
    task, ids = load_task(DATA, "temporal")
    ft = replace(FT_A, seed=0)
    scores = {}
    for label, head, scratch in (("lora", replace(GAUC_A, mode="lora"), False), ("scratch", GAUC_A, True)):
        models: list = []
        finetune_run(pre, task, ids, head, ft, scratch=scratch, on_model=models.append)
        scores[label] = score_rows(models[0], task, task.test, load_pretrained(pre, task, ids).config.max_len)
    scores["logreg"] = score_rows(logreg_on(task, task.train), task, task.test, 1)
    users, labels = task.events.users[task.test], task.events.labels[task.test]
    rows_of = [np.flatnonzero(users == u) for u in np.unique(users)]
    rng = np.random.default_rng(0)
    diffs: dict[str, list[float]] = {"lora - logreg": [], "lora - scratch": []}
    for _ in range(resamples):
        picked = rng.integers(0, len(rows_of), len(rows_of))
        sel = np.concatenate([rows_of[i] for i in picked])
        group = np.repeat(
            np.arange(len(picked)), [len(rows_of[i]) for i in picked]
        )  # a drawn user twice: two
        g = {k: gauc(group, labels[sel], v[sel]) for k, v in scores.items()}
        diffs["lora - logreg"].append(g["lora"] - g["logreg"])
        diffs["lora - scratch"].append(g["lora"] - g["scratch"])
    out = {k: {"test_gauc": gauc(users, labels, v)} for k, v in scores.items()}
    for k, v in diffs.items():
        lo, hi = np.percentile(v, [2.5, 97.5])
        out[k] = {
            "mean": float(np.mean(v)),
            "ci95": [float(lo), float(hi)],
            "share_above_0": float(np.mean(np.array(v) > 0)),
        }
    return {"users": len(rows_of), "resamples": resamples, **out}


def run_jobs(path: Path, jobs: Iterator[Job], header: dict) -> None:
    """Run every job whose key is not in the JSON yet, rewriting the JSON after each one."""
    result = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    result.update(header)
    for key, job in jobs:
        if key in result["runs"]:
            continue
        start = time.perf_counter()
        metrics = job()
        result["runs"][key] = {**slim(metrics), "seconds": time.perf_counter() - start}
        result["protocol"] = metrics["protocol"]
        path.write_text(json.dumps(result, indent=2))
        test = metrics["test"]
        print(key, {k: round(v, 4) for k, v in test.items() if isinstance(v, float)}, flush=True)


def grouped(runs: dict, kind: str) -> dict[str, list[dict]]:
    """Runs of one task kind by model label (dropping the seed, and the shot count's position in b)."""
    out: dict[str, list[dict]] = {}
    for key, m in runs.items():
        parts = key.split("/")
        if parts[0] == kind:
            out.setdefault("/".join(parts[1:-1]), []).append(m)
    return out


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f} (n={len(values)})"


def tables() -> None:
    a = json.loads((RESULTS / "finetune_ml100k_a.json").read_text())["runs"]
    print("| model | AUC | GAUC | LogLoss | accuracy | F1 | trainable / total params | best epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ms in grouped(a, "ctr").items():
        p = ms[0]["params"]
        stats = [cell([m["test"][k] for m in ms]) for k in ("auc", "gauc", "logloss", "accuracy", "f1")]
        epochs = ", ".join(str(m.get("best_epoch", "-")) for m in ms)
        print(
            f"| {name} | " + " | ".join(stats) + f" | {p['trainable']:,} / {p['total']:,} "
            f"({p['trainable_share']:.1%}) | {epochs} |"
        )
    print("\n| rating model | RMSE | MAE |\n|---|---|---|")
    for name, ms in grouped(a, "rating").items():
        rmse, mae = cell([m["test"]["rmse"] for m in ms]), cell([m["test"]["mae"] for m in ms])
        print(f"| {name} | {rmse} | {mae} |")
    path = RESULTS / "finetune_ml100k_b.json"
    if path.is_file():
        b = grouped(json.loads(path.read_text())["runs"], "ctr")
        labels = dict.fromkeys(k.split("/")[0] for k in b)
        print("\n| model | " + " | ".join(f"{s} shots" for s in SHOTS) + " |\n|---|---|---|---|")
        for label in labels:
            cells = [cell([m["test"]["auc"] for m in b.get(f"{label}/{s}", [])]) for s in SHOTS]
            print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["a", "b"])
    parser.add_argument("--pretrained", type=Path, default=Path("runs/sasrec-ml100k-temporal"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--bootstrap", action="store_true")
    args = parser.parse_args()
    if args.table:
        tables()
        return
    torch.set_num_threads(1)
    pre = pretrained_run(args.pretrained)
    pre_metrics = json.loads((pre / "metrics.json").read_text())
    header = {
        "machine": machine_info(),
        "pretrained": {
            "run": str(pre),
            "data_window": pre_metrics["data_window"],
            "test_ndcg@10": pre_metrics["test"]["ndcg@10"],
            "params": pre_metrics["params"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    if args.bootstrap:
        result = {**header, **gauc_bootstrap(pre)}
        (RESULTS / "finetune_ml100k_a_bootstrap.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
    if args.part == "b":
        header["history_like_share_auc"] = like_share_auc(load_task(DATA, "tallrec")[0])
    jobs = jobs_a(pre) if args.part == "a" else jobs_b(pre, args.seeds)
    run_jobs(RESULTS / f"finetune_ml100k_{args.part}.json", jobs, header)


if __name__ == "__main__":
    main()
