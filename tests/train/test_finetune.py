"""The fine-tuning loop and run: it learns, keeps the best epoch, and refuses leaky pretrained runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from foundrec.cli import app
from foundrec.config import RunConfig
from foundrec.data.labeled import TaskData, batches_of, make_batch, next_event_windows, row_windows
from foundrec.errors import FoundrecError
from foundrec.eval.classification import auc
from foundrec.models.heads import HeadConfig, SequenceTaskModel
from foundrec.models.transformer import SequenceTransformer, preset
from foundrec.task_run import load_pretrained, predict_rows
from foundrec.train.finetune import FinetuneConfig, finetune


def test_finetune_learns_and_restores_the_best_validation_epoch(rated_task: TaskData) -> None:
    torch.manual_seed(0)
    ev = rated_task.events
    backbone = SequenceTransformer(ev.n_items, preset("tiny", dim=16, dropout=0.0))
    model = SequenceTaskModel(HeadConfig(mode="full")).build(backbone, rated_task.side, 0.5, pretrained=True)
    train = next_event_windows(ev, rated_task.train, 20)
    valid = row_windows(ev, rated_task.valid, 20)

    def validate(m: SequenceTaskModel) -> float:
        return auc(ev.labels[rated_task.valid], predict_rows(m, rated_task, valid))

    def epoch(rng: np.random.Generator):
        for index in batches_of(train, 16, rng):
            yield make_batch(ev, train, index)

    cfg = FinetuneConfig(lr=5e-3, backbone_lr=5e-4, epochs=6, patience=2)
    result = finetune(model, epoch, len(batches_of(train, 16)), validate, cfg)
    scores = [e.valid for e in result.epochs]
    assert max(scores) > 0.75  # item quality decides most labels: learnable from ids
    assert validate(model) == pytest.approx(max(scores)) and result.best_epoch == 1 + int(np.argmax(scores))


def test_min_epochs_delays_early_stopping_but_keeps_the_best_epoch(rated_task: TaskData) -> None:
    torch.manual_seed(0)
    backbone = SequenceTransformer(rated_task.events.n_items, preset("tiny", dim=16, dropout=0.0))
    model = SequenceTaskModel(HeadConfig(mode="probe")).build(backbone, rated_task.side, 0.5, pretrained=True)
    train = row_windows(rated_task.events, rated_task.train[:32], 5)

    def epoch(rng: np.random.Generator):
        yield make_batch(rated_task.events, train, np.arange(32))

    for min_epochs, ran in ((0, 2), (5, 5)):
        scores = iter(np.linspace(1.0, 0.0, 20))  # validation only gets worse: epoch 0 is the best
        cfg = FinetuneConfig(epochs=10, patience=2, min_epochs=min_epochs)
        result = finetune(model, epoch, 1, lambda m, s=scores: float(next(s)), cfg)
        assert len(result.epochs) == ran and result.best_epoch == 0


def fake_run(tmp_path, window: dict | None, min_rating: float | None = None):
    run = tmp_path / "pre"
    (run / "model").mkdir(parents=True)
    (run / "vocab").mkdir()
    cfg = RunConfig(model="sasrec", data={"dataset": "ml-100k", "min_rating": min_rating})
    (run / "config.json").write_text(cfg.model_dump_json())
    (run / "metrics.json").write_text(json.dumps({"data_window": window}))
    (run / "model" / "model.json").write_text(json.dumps({"model": "sasrec", "params": {}, "meta": {}}))
    (run / "vocab" / "items.txt").write_text("a\nb\n")
    return run


def test_refuses_a_pretrained_run_that_saw_the_test_period(rated_task: TaskData, tmp_path) -> None:
    start = rated_task.test_start
    window = {"train_last_timestamp": start - 100, "valid_last_timestamp": start}
    with pytest.raises(FoundrecError, match="overlaps the temporal test period"):
        load_pretrained(fake_run(tmp_path, window), rated_task, ["a", "b"])


def test_refuses_a_run_without_a_time_window_or_filtered_by_rating(rated_task: TaskData, tmp_path) -> None:
    with pytest.raises(FoundrecError, match="data_window"):
        load_pretrained(fake_run(tmp_path / "1", None), rated_task, ["a", "b"])
    early = {"train_last_timestamp": 0.0, "valid_last_timestamp": 1.0}
    with pytest.raises(FoundrecError, match="min_rating"):
        load_pretrained(fake_run(tmp_path / "2", early, min_rating=4.0), rated_task, ["a", "b"])


def test_cli_pretrain_temporal_then_finetune_and_refuse_leave_one_out(tmp_path) -> None:
    """Real ml-100k, tiny model, one epoch each: the contract, not the accuracy."""
    runner = CliRunner()
    tiny = ["--set", "params.size=tiny", "--set", "params.epochs=1", "--set", "train.threads=1"]
    for split in ("temporal", "loo"):
        args = [
            "train",
            "sasrec",
            "--data",
            "ml-100k",
            "--split",
            split,
            *tiny,
            "--out",
            str(tmp_path / split),
        ]
        assert runner.invoke(app, args).exit_code == 0
    ft = ["--mode", "lora", "--lora-rank", "2", "--lora-items", "--epochs", "1", "--json"]
    ft += ["--batch-size", "256", "--user-rate", "--bias-logreg", "--rank-weight", "2"]
    result = runner.invoke(app, ["finetune", str(tmp_path / "temporal"), *ft, "--out", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert {"auc", "gauc", "logloss", "accuracy", "f1"} <= metrics["test"].keys()
    assert 0 < metrics["params"]["trainable"] < metrics["params"]["total"]
    assert metrics["head"]["lora_rank"] == 2 and metrics["head"]["lora_items"]
    assert (
        metrics["head"]["user_rate"]
        and metrics["head"]["bias_logreg"]
        and metrics["head"]["rank_weight"] == 2
    )
    assert "trainable of" in result.output
    refused = runner.invoke(app, ["finetune", str(tmp_path / "loo"), *ft, "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "overlaps" in refused.output
