"""`foundrec pipeline`: the stages of one job, each writing into its own folder of the run.

data -> pretrain -> finetune (when the config has a [task]) -> baselines -> fuse -> evaluate -> report
-> bundle (the servable model or fusion best on validation, with the fine-tuned CTR head as its ranking
stage when the task is ctr). A stage is done when `stages/NAME.done.json` holds the fingerprint of its
inputs (its settings and the fingerprints of the stages it reads). A rerun skips done stages whose fingerprint
still matches, redoes those whose inputs changed, and lets an interrupted stage resume from what it
left (pretraining from its last checkpoint).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundrec.config import ModelSpec, PipelineConfig
from foundrec.errors import FoundrecError
from foundrec.eval.report import SELECT_METRIC
from foundrec.experiment import Prepared, prepare, train_run
from foundrec.train.early_stopping import EpochLog

STAGES = ("data", "pretrain", "finetune", "baselines", "fuse", "evaluate", "report", "bundle")


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageRunner:
    """Runs a stage unless its folder already holds a finished result for the same inputs."""

    out: Path
    restart_from: str | None = None
    log: Callable[[str], None] = print
    done: dict[str, str] = field(default_factory=dict)  # stage -> fingerprint, for downstream inputs

    def run(
        self, name: str, inputs: dict[str, Any], work: Callable[[Path], dict[str, Any]]
    ) -> dict[str, Any]:
        folder = self.out / name
        stem = str(self.out / "stages" / name.replace("/", "-"))
        marker, started = Path(stem + ".done.json"), Path(stem + ".inputs.json")
        key = fingerprint(inputs)
        if self._forced(name) or (started.is_file() and json.loads(started.read_text())["key"] != key):
            shutil.rmtree(folder, ignore_errors=True)  # inputs changed: what is there is stale
            marker.unlink(missing_ok=True)
            started.unlink(missing_ok=True)
        if marker.is_file():
            self.log(f"{name}: done, inputs unchanged (skipped)")
            self.done[name] = key
            return json.loads(marker.read_text())["result"]
        resuming = started.is_file()
        started.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"key": key, "inputs": inputs}, indent=2, default=str))
        self.log(f"{name}: {'resuming' if resuming else 'running'}")
        start = time.perf_counter()
        result = work(folder)
        marker.write_text(json.dumps({"key": key, "seconds": time.perf_counter() - start, "result": result}))
        self.done[name] = key
        return result

    def _forced(self, name: str) -> bool:
        if self.restart_from is None:
            return False
        stage = name.split("/")[0]
        return STAGES.index(stage) >= STAGES.index(self.restart_from)


def run_pipeline(
    cfg: PipelineConfig,
    out: Path,
    restart_from: str | None = None,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[str, EpochLog, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage; returns the run's summary (the root metrics.json)."""
    if restart_from is not None and restart_from not in STAGES:
        raise FoundrecError(f"unknown stage {restart_from!r}; stages: {', '.join(STAGES)}")
    if cfg.pretrain.model in cfg.baselines:
        raise FoundrecError("a baseline may not be named like the pretrained model's stage")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
    runner = StageRunner(out, restart_from, log)

    @functools.cache  # loaded once, only when a stage needs it
    def data() -> Prepared:
        return prepare(cfg.run_config(cfg.pretrain))

    runner.run(
        "data",
        {"data": cfg.data.model_dump(), "split": cfg.split.model_dump(), "source": _source_stamp(cfg)},
        lambda f: _data(data(), f),
    )
    members = {"pretrain": cfg.pretrain} | {f"baselines/{n}": spec for n, spec in cfg.baselines.items()}
    for name, spec in members.items():
        inputs = {"data": runner.done["data"], "run": cfg.run_config(spec).model_dump()}
        runner.run(name, inputs, _trainer(cfg, spec, data, name, on_epoch))
        if name == "pretrain" and cfg.task is not None:
            inputs = {"pretrain": runner.done["pretrain"], "task": cfg.task.model_dump()}
            runner.run("finetune", inputs, lambda folder: _finetune(cfg, out / "pretrain", folder))
    member_dirs = {_member_name(name, cfg): out / name for name in members}
    upstream = {name: runner.done[name] for name in members}
    fusions = runner.run(
        "fuse", {**upstream, "fusion": cfg.fusion.model_dump()}, lambda f: _fuse(member_dirs, cfg, data(), f)
    )
    fusion_dirs = {name: out / "fuse" / name for name in fusions["fusions"]}
    upstream["fuse"] = runner.done["fuse"]
    runner.run("evaluate", upstream, lambda folder: _evaluate(member_dirs, fusion_dirs, folder))
    runner.run(
        "report",
        {"evaluate": runner.done["evaluate"]},
        lambda folder: _report(out, folder, cfg.data.dataset or str(cfg.data.path)),
    )
    # The report picked by validation; the fine-tuned head (when there is a task) ranks its candidates.
    bundle_inputs = {"report": runner.done["report"], "select": f"valid/{SELECT_METRIC}, servable"}
    ranker = None
    if cfg.task is not None and cfg.task.task == "ctr":
        bundle_inputs["finetune"] = runner.done["finetune"]
        ranker = out / "finetune"
    runner.run(
        "bundle",
        bundle_inputs,
        lambda folder: _bundle(out, {**member_dirs, **fusion_dirs}, ranker, data, folder),
    )
    summary = json.loads((out / "metrics.json").read_text())
    if cfg.task is not None:  # the task's own metrics (AUC, GAUC, ... or RMSE) beside the ranking ones
        task = json.loads((out / "finetune" / "metrics.json").read_text())
        summary["task"] = {
            "task": cfg.task.task,
            "mode": cfg.task.mode,
            "valid": task["valid"],
            "test": task["test"],
        }
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def _member_name(stage: str, cfg: PipelineConfig) -> str:
    return cfg.pretrain.model if stage == "pretrain" else stage.split("/", 1)[1]


def _source_stamp(cfg: PipelineConfig) -> dict[str, Any]:
    """Size and modification time of the data file, so a changed log reruns everything after it."""
    from foundrec.data.datasets import source_for

    if cfg.data.dataset == "synthetic":
        return {"synthetic": cfg.data.synthetic}
    path = Path(source_for(cfg.data)[0].path)
    if not path.is_file():
        raise FoundrecError(f"data file not found: {path}; set data.data_dir or FOUNDREC_DATA")
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _data(p: Prepared, folder: Path) -> dict[str, Any]:
    facts = {"source": p.data.source, **p.data.interactions.stats(), "protocol": p.split.protocol}
    (folder / "stats.json").write_text(json.dumps(facts, indent=2, default=str))
    return facts


def _trainer(
    cfg: PipelineConfig,
    spec: ModelSpec,
    data: Callable[[], Prepared],
    name: str,
    on_epoch: Callable[[str, EpochLog, int], None] | None,
) -> Callable[[Path], dict[str, Any]]:
    def work(folder: Path) -> dict[str, Any]:
        callback = (lambda e, total: on_epoch(name, e, total)) if on_epoch else None
        metrics = train_run(cfg.run_config(spec), folder, on_epoch=callback, prepared=data())
        return {"valid_ndcg@10": metrics["valid"]["ndcg@10"], "test_ndcg@10": metrics["test"]["ndcg@10"]}

    return work


def _finetune(cfg: PipelineConfig, pretrained: Path, folder: Path) -> dict[str, Any]:
    """The task head on the pretrained backbone; finetune_run refuses a run that saw the test period."""
    from foundrec.models.heads import HeadConfig
    from foundrec.task_run import finetune_run, load_task
    from foundrec.train.finetune import FinetuneConfig

    t = cfg.task
    assert t is not None
    rows, item_ids = load_task(cfg.data, t.protocol)
    ft = FinetuneConfig(
        lr=t.lr, backbone_lr=t.backbone_lr, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed
    )
    head = HeadConfig(
        task=t.task,
        mode=t.mode,
        lora_rank=t.lora_rank,
        lora_alpha=2.0 * t.lora_rank,  # as `foundrec finetune`
        rank_weight=t.rank_weight,
        user_rate=t.user_rate,
        bias_logreg=t.bias_logreg,
    )
    metrics = finetune_run(pretrained, rows, item_ids, head, ft, t.shots, out=folder)
    return {"test": metrics["test"]}


def _fuse(members: dict[str, Path], cfg: PipelineConfig, p: Prepared, folder: Path) -> dict[str, Any]:
    """Every fusion method over the members' top-N lists, computed once per split and shared.

    Learned fusions see only validation lists and targets; metrics@K come from the candidate rows.
    """
    from foundrec.fusion import FUSIONS, candidate_metrics, collect_top_lists, load_member

    unknown = [m for m in cfg.fusion.methods if f"fusion-{m}" not in FUSIONS]
    if unknown:
        known = ", ".join(name.removeprefix("fusion-") for name in FUSIONS)
        raise FoundrecError(f"unknown fusion method(s) {', '.join(unknown)}; available: {known}")
    loaded = [load_member(path, name) for name, path in members.items()]
    n, ks = cfg.fusion.candidates, tuple(cfg.eval.ks)
    lists = {
        split: collect_top_lists([m.model for m in loaded], data, n, cfg.eval.exclude_seen)
        for split, data in (("valid", p.split.valid), ("test", p.split.test))
    }
    for method in cfg.fusion.methods:
        extra = {"normalization": cfg.fusion.normalization} if method == "weighted" else {}
        fusion = FUSIONS[f"fusion-{method}"](loaded, top_n=n, exclude_seen=cfg.eval.exclude_seen, **extra)
        fusion.fit(p.split.train, p.split.n_items).fit_top_lists(lists["valid"], p.split.valid.targets)
        metrics = {
            "model": fusion.name,
            "valid": candidate_metrics(fusion.fuse, lists["valid"], p.split.valid.targets, ks),
            "test": candidate_metrics(fusion.fuse, lists["test"], p.split.test.targets, ks),
            "fitted": fusion.fitted_values(),
        }
        fusion.save(folder / method)
        (folder / method / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"fusions": list(cfg.fusion.methods)}


def _evaluate(models: dict[str, Path], fusions: dict[str, Path], folder: Path) -> dict[str, Any]:
    """Gather every result the report shows; each model's test pass recorded its popularity profile."""
    results: dict[str, Any] = {}
    for group, dirs in (("models", models), ("fusions", fusions)):
        results[group] = {}
        for name, run_dir in dirs.items():
            metrics = json.loads((run_dir / "metrics.json").read_text())
            epochs = run_dir / "epochs.json"
            results[group][name] = {
                "valid": metrics["valid"],
                "test": metrics["test"],
                "kind": metrics.get("model", ""),
                "epochs": json.loads(epochs.read_text()) if epochs.is_file() else [],
                # Fusions are scored from candidate rows only: no top-K pass, no profile.
                "popularity": metrics.get("popularity", {}).get("deciles"),
                "params": metrics.get("params"),
                "train_seconds": metrics.get("train_seconds"),
            }
    first = json.loads((next(iter(models.values())) / "metrics.json").read_text())
    results.update(
        popularity_k=first["popularity"]["k"],
        catalogue_popularity=first["popularity"]["training_interactions"],
        data=first["data"],
        protocol=first["protocol"],
    )
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    return {"models": list(models), "fusions": list(fusions)}


def _report(out: Path, folder: Path, title: str) -> dict[str, Any]:
    """report.html, metrics.json and summary.md in report/; the last two also at the run's root."""
    from foundrec.eval.report import ModelResult, ReportInput, write_report

    results = json.loads((out / "evaluate" / "results.json").read_text())
    inputs = ReportInput(
        title=f"foundrec pipeline: {title}",
        models={n: ModelResult(**r) for n, r in results.pop("models").items()},
        fusions={n: ModelResult(**r) for n, r in results.pop("fusions").items()},
        **results,
    )
    paths = write_report(folder, inputs)
    for key in ("metrics", "summary"):
        shutil.copyfile(paths[key], out / paths[key].name)
    return {"html": str(paths["html"])}


def _bundle(
    out: Path, sources: dict[str, Path], ranker: Path | None, data: Callable[[], Prepared], folder: Path
) -> dict[str, Any]:
    """The servable model or fusion with the best validation NDCG@10 in the report, as a bundle."""
    from foundrec.serve.bundle import export_bundle

    name = _best_servable(json.loads((out / "metrics.json").read_text()), sources)
    export_bundle(sources[name], folder, ranker=ranker, data=data().data)
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"served": name, "ranker": manifest["ranker"], "manifest": manifest}


def _best_servable(summary: dict[str, Any], sources: dict[str, Path]) -> str:
    """Highest validation NDCG@10 among fusions and the models serving can run alone (sasrec, hstu, bpr).

    Equal scores go to the first in the report's order (models, then fusions).
    """
    from foundrec.models import MODELS
    from foundrec.models.base import DotProductRecommender, model_folder

    def servable(name: str) -> bool:
        spec = json.loads((model_folder(sources[name]) / "model.json").read_text())
        kind = MODELS.get(spec["model"])
        return "members" in spec or (kind is not None and issubclass(kind, DotProductRecommender))

    rows = {**summary["models"], **summary["fusions"]}
    names = [n for n in rows if n in sources and servable(n)]
    if not names:
        raise FoundrecError("no model of this pipeline can be served (sasrec, hstu, bpr or a fusion)")

    def score(name: str) -> float:
        value = rows[name]["valid"].get(SELECT_METRIC)
        return -math.inf if value is None else value

    return max(names, key=score)
