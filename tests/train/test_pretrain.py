"""The training loop: exact resume from a checkpoint, and DDP under torchrun matching one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foundrec.data.split import Split
from foundrec.models.sequential import SequentialRecommender
from foundrec.train.pretrain import pretrain

TINY = {"size": "tiny", "dropout": 0.1, "lr": 3e-3, "batch_size": 64, "epochs": 4}


class Crash(Exception):
    pass


def test_resume_after_a_crash_gives_the_same_weights(tmp_path: Path, small_split: Split) -> None:
    def validate(model: SequentialRecommender) -> float:
        return float(sum(p.detach().sum() for p in model.network_.parameters()))  # any deterministic number

    whole = SequentialRecommender(**TINY)
    pretrain(whole, small_split.train, small_split.n_items, validate, patience=99)

    calls = []

    def crash_in_epoch_3(model: SequentialRecommender) -> float:
        calls.append(1)
        if len(calls) == 3:
            raise Crash
        return validate(model)

    with pytest.raises(Crash):
        pretrain(
            SequentialRecommender(**TINY),
            small_split.train,
            small_split.n_items,
            crash_in_epoch_3,
            patience=99,
            checkpoint_dir=tmp_path,
        )
    resumed = SequentialRecommender(**TINY)
    result = pretrain(
        resumed, small_split.train, small_split.n_items, validate, patience=99, checkpoint_dir=tmp_path
    )
    assert [e.epoch for e in result.epochs] == [1, 2, 3, 4]
    for key, value in whole.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def run_train(out: Path, procs: int) -> list[float]:
    args = [
        "train",
        "sasrec",
        "--data",
        "synthetic",
        "--out",
        str(out),
        "--json",
        "--set",
        "data.synthetic.users=300",
        "--set",
        "data.synthetic.items=80",
        "--set",
        "model.size=tiny",
        "--set",
        "model.dropout=0.0",
        "--set",
        "model.epochs=3",
        "--set",
        "model.batch_size=32",
        "--set",
        "train.threads=1",
    ]
    if procs == 1:
        cmd = [sys.executable, "-m", "foundrec.cli", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(procs),
            "--master_port",
            "29533",
            "-m",
            "foundrec.cli",
            *args,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [e["loss"] for e in json.loads((out / "epochs.json").read_text())]


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    single = run_train(tmp_path / "one", 1)
    ddp = run_train(tmp_path / "two", 2)
    assert len(single) == len(ddp) == 3
    assert single[-1] < single[0]
    for a, b in zip(single, ddp, strict=True):
        assert abs(a - b) < 1e-5 * abs(a), (single, ddp)
