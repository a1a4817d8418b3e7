"""`foundrec pipeline`: stages skip when done, redo when their inputs change, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from foundrec.config import load_pipeline_config
from foundrec.errors import FoundrecError
from foundrec.fusion import load_model
from foundrec.pipeline import run_pipeline
from foundrec.serve.bundle import load_bundle

CONFIG = """
[data]
dataset = "synthetic"
[data.synthetic]
users = {users}
items = 300
[train]
patience = 50
threads = 1
[pretrain]
model = "sasrec"
[pretrain.params]
size = "tiny"
epochs = {epochs}
[baselines.pop]
model = "pop"
[fusion]
methods = ["weighted", "rrf"]
candidates = 50
"""


def write_config(tmp_path: Path, users: int = 300, epochs: int = 2) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(CONFIG.format(users=users, epochs=epochs))
    return path


def test_rerun_skips_done_stages_and_redoes_changed_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    logs: list[str] = []
    first = run_pipeline(load_pipeline_config(config), tmp_path / "run", log=logs.append)
    assert set(first["models"]) == {"sasrec", "pop"} and set(first["fusions"]) == {"weighted", "rrf"}
    assert first["best_single"] in first["models"]
    assert set(first["popularity"]["deciles"]) == {"sasrec", "pop"}  # recorded by each test pass
    run = tmp_path / "run"
    for produced in ("report/report.html", "summary.md", "bundle/manifest.json", "fuse/weighted/model.json"):
        assert (run / produced).is_file(), produced
    fused = load_model(run / "fuse" / "weighted")
    assert [m.name for m in fused.members] == ["sasrec", "pop"]
    # the bundle serves the best on validation among what serving can run (pop alone cannot)
    valid = {
        n: r["valid"]["ndcg@10"] for n, r in {**first["models"], **first["fusions"]}.items() if n != "pop"
    }
    served = json.loads((run / "stages" / "bundle.done.json").read_text())["result"]["served"]
    assert valid[served] == max(valid.values())
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    assert manifest["model"] == ("sasrec" if served == "sasrec" else f"fusion-{served}")
    assert manifest["ranker"] is None
    logs.clear()
    again = run_pipeline(load_pipeline_config(config), tmp_path / "run", log=logs.append)
    assert again["models"] == first["models"]
    assert all(
        "skipped" in line for line in logs if line.split(":")[0] in ("data", "pretrain", "baselines/pop")
    )

    logs.clear()
    changed = load_pipeline_config(config, ["pretrain.params.epochs=1"])
    run_pipeline(changed, tmp_path / "run", log=logs.append)
    assert "pretrain: running" in logs and "baselines/pop: done, inputs unchanged (skipped)" in logs

    logs.clear()
    run_pipeline(changed, tmp_path / "run", restart_from="baselines", log=logs.append)
    assert "pretrain: done, inputs unchanged (skipped)" in logs and "baselines/pop: running" in logs


def test_unknown_stage_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FoundrecError, match="unknown stage 'train'"):
        run_pipeline(load_pipeline_config(write_config(tmp_path)), tmp_path / "run", restart_from="train")


def test_kill_9_during_pretraining_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    config = write_config(tmp_path, users=800, epochs=6)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "foundrec.cli", "pipeline", str(config), "--json"]
    checkpoint = tmp_path / "killed" / "pretrain" / "checkpoint" / "checkpoint.pt"
    proc = subprocess.Popen(command + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file() and len(_epochs_in(checkpoint)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "pretrain" / "stage.json").exists(), "killed too late to test resume"
    epochs_at_kill = len(_epochs_in(checkpoint))
    assert 2 <= epochs_at_kill < 6

    resumed = subprocess.run(
        command + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "pretrain: resuming" in resumed.stderr
    whole = subprocess.run(
        command + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr
    assert json.loads(resumed.stdout)["models"] == json.loads(whole.stdout)["models"]


def _epochs_in(checkpoint: Path) -> list:
    # Safe while training writes: checkpoints are renamed into place whole.
    return torch.load(checkpoint, weights_only=False)["epochs"]


def test_a_task_is_fine_tuned_from_the_pretrain_stage(tmp_path: Path) -> None:
    from foundrec.data.datasets import REGISTRY, data_dir

    if not (data_dir(None) / REGISTRY["ml-100k"].path).is_file():
        pytest.skip("ml-100k not in the data folder")
    config = tmp_path / "task.toml"
    config.write_text(
        '[data]\ndataset = "ml-100k"\n[split]\nmethod = "temporal"\n[train]\nthreads = 1\n'
        '[pretrain]\nmodel = "sasrec"\n[pretrain.params]\nsize = "tiny"\nepochs = 1\n'
        '[baselines.pop]\nmodel = "pop"\n[fusion]\nmethods = ["rrf"]\ncandidates = 20\n'
        '[task]\ntask = "ctr"\nmode = "lora"\nepochs = 1\nrank_weight = 2.0\nuser_rate = true\n'
    )
    summary = run_pipeline(load_pipeline_config(config), tmp_path / "run", log=lambda _: None)
    assert summary["task"]["mode"] == "lora" and 0.0 < summary["task"]["test"]["auc"] < 1.0
    assert (tmp_path / "run" / "finetune" / "model").is_dir()
    head = json.loads((tmp_path / "run" / "finetune" / "model" / "model.json").read_text())["head"]
    assert head["user_rate"] and head["rank_weight"] == 2.0 and not head["bias_logreg"]
    manifest = json.loads((tmp_path / "run" / "bundle" / "manifest.json").read_text())
    assert manifest["ranker"] == "sequence-head" and "ranker/tensors.pt" in manifest["files"]
    assert load_bundle(tmp_path / "run" / "bundle").ranker is not None
