"""One run on a labelled task (CTR or rating): rows -> model -> fit (validation picks the epoch) -> test once.

The pretrained-model counterpart of experiment.py, used by `foundrec finetune` and the benchmarks. A
pretrained run is accepted only if everything it learned from or was selected on happened before the
task's test period, and only if it never saw ratings (`data.min_rating` unset).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foundrec.config import DataConfig, RunConfig
from foundrec.data.datasets import load_dataset
from foundrec.data.labeled import (
    EventWindows,
    TaskData,
    batches_of,
    build_events,
    few_shot,
    make_batch,
    next_event_windows,
    row_windows,
    side_features,
    tallrec_task,
    temporal_task,
)
from foundrec.errors import FoundrecError
from foundrec.eval.classification import auc, best_threshold, ctr_metrics, rating_metrics
from foundrec.models.adapters import count_parameters
from foundrec.models.ctr_baselines import MLPCTR, BiasedMF, DeepFM, LogisticCTR
from foundrec.models.heads import HeadConfig, SequenceTaskModel
from foundrec.models.transformer import SequenceTransformer, TransformerConfig
from foundrec.train.finetune import FinetuneConfig, finetune

PROTOCOLS = ("temporal", "tallrec")
BASELINES = ("logreg", "mlp", "deepfm", "biased-mf")
EVAL_BATCH = 512


def load_task(data: DataConfig, protocol: str) -> tuple[TaskData, list[str]]:
    """The protocol's rows and the item vocabulary (checked against a pretrained run's)."""
    if protocol not in PROTOCOLS:
        raise FoundrecError(f"unknown protocol {protocol!r}; choose temporal or tallrec")
    loaded = load_dataset(data)
    events = build_events(loaded.interactions)
    ids = loaded.interactions
    side = side_features(loaded.users, loaded.items, ids.users.ids, ids.items.ids)
    task = temporal_task(events, side) if protocol == "temporal" else tallrec_task(events, side)
    return task, ids.items.ids


@dataclass(frozen=True)
class Pretrained:
    run_dir: Path
    config: TransformerConfig
    state: dict[str, torch.Tensor]
    window: dict[str, float]
    temperature: float | None  # of its cosine softmax; None for dot-product scores


def load_pretrained(run_dir: Path, task: TaskData, item_ids: list[str]) -> Pretrained:
    """The backbone of a `foundrec train sasrec|hstu` run, after checking it cannot leak the test period."""
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json", "model/model.json", "vocab/items.txt"):
        if not (run_dir / name).is_file():
            raise FoundrecError(
                f"{run_dir} is not a finished training run ({name} missing); pass the --out of "
                "`foundrec train sasrec --data ml-100k --split temporal`"
            )
    spec = json.loads((run_dir / "model" / "model.json").read_text())
    if spec["model"] not in ("sasrec", "hstu"):
        raise FoundrecError(f"{run_dir} holds a {spec['model']} model; fine-tuning needs sasrec or hstu")
    cfg = RunConfig.model_validate_json((run_dir / "config.json").read_text())
    if cfg.data.min_rating is not None:
        raise FoundrecError(
            f"{run_dir} was pretrained on interactions filtered by rating (data.min_rating): the ratings "
            "are the labels here; pretrain again without data.min_rating"
        )
    window = json.loads((run_dir / "metrics.json").read_text()).get("data_window")
    if window is None:
        raise FoundrecError(
            f"{run_dir} does not record which interactions it saw (no data_window in metrics.json); "
            "pretrain again with `foundrec train sasrec --split temporal`"
        )
    if window["valid_last_timestamp"] >= task.test_start:
        raise FoundrecError(
            f"{run_dir} learned from or was selected on interactions up to timestamp "
            f"{window['valid_last_timestamp']:.0f}, which overlaps the {task.name} test period (from "
            f"{task.test_start:.0f}); pretrain with `--split temporal` so it stops before the test period"
        )
    if (run_dir / "vocab" / "items.txt").read_text().split("\n")[:-1] != item_ids:
        raise FoundrecError(f"{run_dir} was trained on other data (its item vocabulary differs)")
    state = torch.load(run_dir / "model" / "tensors.pt", weights_only=True, map_location="cpu")
    from foundrec.models.sequential import SequentialRecommender, saved_with_new_text_only

    # The recommender's size presets resolve the config; the tensors say whether new items are text-only.
    model = SequentialRecommender(**{**spec["params"], "new_text_only": saved_with_new_text_only(state)})
    config = model.config(spec["meta"]["text_dim"])
    temperature = model.temperature if model.similarity == "cosine" else None
    return Pretrained(run_dir, config, state, window, temperature)


def backbone_from(
    pre: Pretrained, n_items: int, dropout: float, pretrained: bool, seed: int
) -> SequenceTransformer:
    """The pretrained backbone (or the same architecture freshly initialised, for `--scratch`)."""
    torch.manual_seed(seed)
    text = pre.state.get("items.text")
    net = SequenceTransformer(
        n_items, replace(pre.config, dropout=dropout), None if text is None else text[:-1]
    )
    if pretrained:
        net.load_state_dict({k: v for k, v in pre.state.items() if k != "log_prior"})
    return net


def predict_rows(model: Any, task: TaskData, windows: EventWindows) -> np.ndarray:
    """Predictions for row windows (one target each), in the windows' order."""
    out = np.empty(len(windows))
    for index in batches_of(windows, EVAL_BATCH):
        out[index] = model.predict(make_batch(task.events, windows, index)).numpy()
    return out


def score_rows(model: Any, task: TaskData, rows: np.ndarray, history: int) -> np.ndarray:
    return predict_rows(model, task, row_windows(task.events, rows, history))


def report(task: TaskData, kind: str, valid_pred: np.ndarray, test_pred: np.ndarray) -> dict[str, Any]:
    """Validation and test metrics; the accuracy/F1 threshold comes from validation."""
    ev = task.events
    if kind == "rating":
        return {
            "valid": rating_metrics(ev.ratings[task.valid], valid_pred),
            "test": rating_metrics(ev.ratings[task.test], test_pred),
        }
    cut = best_threshold(ev.labels[task.valid], valid_pred)
    return {
        "valid": ctr_metrics(ev.users[task.valid], ev.labels[task.valid], valid_pred, cut),
        "test": ctr_metrics(ev.users[task.test], ev.labels[task.test], test_pred, cut),
    }


def _validator(task: TaskData, kind: str, windows: EventWindows):
    labels, ratings = task.events.labels[task.valid], task.events.ratings[task.valid]

    def validate(model: Any) -> float:
        pred = predict_rows(model, task, windows)
        if kind == "rating":
            return -float(np.sqrt(np.mean((pred - ratings) ** 2)))
        return auc(labels, pred)

    return validate


def _train_rows(task: TaskData, shots: int | None, seed: int) -> np.ndarray:
    return task.train if shots is None else few_shot(task.train, shots, seed)


def fit_and_report(
    model: Any,
    task: TaskData,
    kind: str,
    train_windows: EventWindows,
    history: int,
    ft: FinetuneConfig,
    on_epoch=None,
) -> dict[str, Any]:
    """Train `model` with the fine-tuning loop, then evaluate valid and test once."""
    valid_windows = row_windows(task.events, task.valid, history)
    batch_size = min(ft.batch_size, len(train_windows))

    def epoch(rng: np.random.Generator):
        for index in batches_of(train_windows, batch_size, rng):
            yield make_batch(task.events, train_windows, index)

    steps = len(batches_of(train_windows, batch_size))
    result = finetune(model, epoch, steps, _validator(task, kind, valid_windows), ft, on_epoch)
    start = time.perf_counter()
    metrics = report(
        task, kind, predict_rows(model, task, valid_windows), score_rows(model, task, task.test, history)
    )
    trainable, total = model.parameters_count()
    metrics.update(
        params={"trainable": trainable, "total": total, "trainable_share": trainable / max(1, total)},
        best_epoch=result.best_epoch,
        epochs=len(result.epochs),
        train_seconds=result.train_seconds,
        eval_seconds=time.perf_counter() - start,
        curve=[asdict(e) for e in result.epochs],
    )
    return metrics


def finetune_run(
    pretrained_run: Path,
    task: TaskData,
    item_ids: list[str],
    head: HeadConfig,
    ft: FinetuneConfig,
    shots: int | None = None,
    scratch: bool = False,
    backbone_dropout: float = 0.1,
    out: Path | None = None,
    on_model=None,
    on_epoch=None,
) -> dict[str, Any]:
    """Fine-tune a pretrained run's backbone (or train it from scratch) with a CTR or rating head."""
    pre = load_pretrained(pretrained_run, task, item_ids)
    rows = _train_rows(task, shots, ft.seed)
    ev = task.events
    targets = ev.labels[rows] if head.task == "ctr" else ev.ratings[rows]
    target_mean = float(targets.mean())
    if head.prior and pre.temperature is None:
        raise FoundrecError(f"{pretrained_run} scores items by dot product; the prior head needs cosine")
    backbone = backbone_from(pre, ev.n_items, backbone_dropout, not scratch, ft.seed)
    model = SequenceTaskModel(head).build(
        backbone,
        task.side,
        target_mean,
        pretrained=not scratch,
        temperature=pre.temperature or 1.0,
        log_prior=None if scratch else pre.state["log_prior"],
    )
    if head.bias_logreg:  # logreg_on refuses rows of one label
        model.set_item_bias(logreg_on(task, rows).item_logits(), ev.items[rows])
    elif head.bias_from_data:
        model.init_biases(ev.items[rows], targets)
    if on_model:
        on_model(model)
    history = task.history or pre.config.max_len
    if task.history is None and shots is None:
        train_windows = next_event_windows(ev, rows, pre.config.max_len)
    else:
        train_windows = row_windows(ev, rows, history)
    if head.prior:
        sample = np.arange(min(len(train_windows), EVAL_BATCH))
        model.standardise_prior(make_batch(ev, train_windows, sample))
    metrics = fit_and_report(model, task, head.task, train_windows, history, ft, on_epoch)
    trainable, total = count_parameters(model.network_.backbone)  # LoRA's share of what it adapts
    metrics["params"].update(backbone_trainable=trainable, backbone_total=total)
    metrics.update(
        model="scratch" if scratch else f"pretrained+{head.mode}",
        task=head.task,
        mode=head.mode,
        shots=shots,
        seed=ft.seed,
        protocol=task.describe(),
        pretrained={"run": str(pre.run_dir), "data_window": pre.window, "scratch": scratch},
        head=asdict(head),
        finetune=asdict(ft),
    )
    if out is not None:
        write_task_run(Path(out), model, metrics)
    return metrics


def logreg_on(task: TaskData, rows: np.ndarray, c: float = 1.0) -> LogisticCTR:
    """Logistic regression on ids and side features of `rows` (C = 1: the baseline's validation choice)."""
    if len(np.unique(task.events.labels[rows])) < 2:
        raise FoundrecError(
            f"logistic regression needs liked and disliked rows; all {len(rows)} training rows have one "
            "label (with --shots, draw more rows or another --seed)"
        )
    windows = row_windows(task.events, rows, 1)
    batch = make_batch(task.events, windows, np.arange(len(windows)))
    return LogisticCTR(task.side, task.events.n_users, task.events.n_items, c).fit(batch)


def baseline_run(
    name: str,
    task: TaskData,
    ft: FinetuneConfig,
    shots: int | None = None,
    c_grid: tuple[float, ...] = (0.1, 1.0, 10.0),
) -> dict[str, Any]:
    """A baseline on the same rows; logistic regression picks C on validation AUC."""
    ev = task.events
    rows = _train_rows(task, shots, ft.seed)
    windows = row_windows(ev, rows, 1)  # baselines read no history; windows carry the rows
    kind = "rating" if name == "biased-mf" else "ctr"
    if name == "logreg":
        valid_windows = row_windows(ev, task.valid, 1)
        best: tuple[float, LogisticCTR] | None = None
        for c in c_grid:
            model = logreg_on(task, rows, c)
            score = _validator(task, kind, valid_windows)(model)
            if best is None or score > best[0]:
                best = (score, model)
        model = best[1]
        metrics = report(
            task, kind, predict_rows(model, task, valid_windows), score_rows(model, task, task.test, 1)
        )
        trainable, total = model.parameters_count()
        metrics.update(params={"trainable": trainable, "total": total, "trainable_share": 1.0}, c=model.c)
    else:
        if name == "mlp":
            model = MLPCTR(ev.n_users, ev.n_items)
        elif name == "deepfm":
            model = DeepFM(ev.n_users, ev.n_items, task.side)
        elif name == "biased-mf":
            model = BiasedMF(ev.n_users, ev.n_items, float(ev.ratings[rows].mean()))
        else:
            raise FoundrecError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
        metrics = fit_and_report(model, task, kind, windows, 1, ft)
    metrics.update(
        model=name, task=kind, shots=shots, seed=ft.seed, protocol=task.describe(), finetune=asdict(ft)
    )
    return metrics


def write_task_run(out: Path, model: SequenceTaskModel, metrics: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    curve = metrics.pop("curve")
    (out / "epochs.json").write_text(json.dumps(curve, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    metrics["curve"] = curve
