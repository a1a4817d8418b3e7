"""A run's report: report.html (self-contained), metrics.json (the summary contract) and summary.md.

The input is plain data (`ReportInput`), so the pipeline, the CLI and tests build it the same way;
`read_runs` fills it from `foundrec train` folders.

metrics.json: {"models": {NAME: {"valid": {...}, "test": {...}}}, "fusions": {NAME: {...}},
"best_single": NAME, "best_single_by": "valid/ndcg@10", "data": {...}, "protocol": {...}}, plus
"popularity": {"k", "deciles": {NAME: [10 shares]}, "training_interactions": [...]} when profiles exist.
The best single model is chosen on validation, as everything else is (docs/evaluation.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundrec.errors import FoundrecError

SELECT_METRIC = "ndcg@10"
SHOWN = ("hr@10", "ndcg@10", "recall@20", "ndcg@20", "mrr", "coverage@10", "tail/ndcg@10", "cold/ndcg@10")


@dataclass
class ModelResult:
    """One model's or fusion's results; only `test` is required."""

    test: dict[str, float]
    valid: dict[str, float] = field(default_factory=dict)
    kind: str = ""  # model class (sasrec, itemknn, rrf, ...) when the name is a run label
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epochs.json rows: epoch, loss, valid
    popularity: list[float] | None = None  # share of top-K slots per popularity decile, most popular first
    params: int | None = None
    train_seconds: float | None = None


@dataclass
class ScalingPoint:
    name: str
    params: int
    valid: float  # validation NDCG@10
    test: float | None = None


@dataclass
class ReportInput:
    title: str
    models: dict[str, ModelResult]
    fusions: dict[str, ModelResult] = field(default_factory=dict)
    catalogue_popularity: list[float] | None = None  # training interactions' share per popularity decile
    popularity_k: int = 10  # the K of ModelResult.popularity
    scaling: list[ScalingPoint] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # dataset facts: source, users, items, ...
    protocol: dict[str, Any] = field(default_factory=dict)  # metrics.json's protocol block

    def rows(self) -> dict[str, ModelResult]:
        """Models then fusions, for tables that show both side by side."""
        return {**self.models, **self.fusions}


def best_single(inputs: ReportInput) -> tuple[str, str]:
    """(name, "valid" or "test"): the model, not fusion, with the highest validation NDCG@10.

    Test NDCG@10 decides only when some model has no validation result (e.g. a run that only tested).
    """
    if not inputs.models:
        raise FoundrecError("a report needs at least one model")
    split = "valid" if all(is_finite(m.valid.get(SELECT_METRIC)) for m in inputs.models.values()) else "test"
    name = max(inputs.models, key=lambda n: getattr(inputs.models[n], split).get(SELECT_METRIC, -math.inf))
    return name, split


def summary_json(inputs: ReportInput) -> dict[str, Any]:
    """The metrics.json contract; NaN (an empty slice) becomes null so the file is strict JSON."""
    best, split = best_single(inputs)
    return _clean(
        {
            "models": {n: {"valid": m.valid, "test": m.test} for n, m in inputs.models.items()},
            "fusions": {n: {"valid": m.valid, "test": m.test} for n, m in inputs.fusions.items()},
            "best_single": best,
            "best_single_by": f"{split}/{SELECT_METRIC}",
            "data": inputs.data,
            "protocol": inputs.protocol,
        }
        | _popularity_json(inputs)
    )


def _popularity_json(inputs: ReportInput) -> dict[str, Any]:
    """The popularity profiles, kept so a report can be redrawn without ranking again."""
    profiles = {n: r.popularity for n, r in inputs.rows().items() if r.popularity}
    if not profiles:
        return {}
    return {
        "popularity": {
            "k": inputs.popularity_k,
            "deciles": profiles,
            "training_interactions": inputs.catalogue_popularity,
        }
    }


def summary_markdown(inputs: ReportInput, columns: Sequence[str] = SHOWN) -> str:
    """Test metrics as a Markdown table (best per column in bold) and the fusion-vs-best-single line."""
    rows = inputs.rows()
    best, split = best_single(inputs)
    tops = best_per_column(rows, columns)
    lines = [f"# {inputs.title}", ""]
    if inputs.data:
        lines += [", ".join(f"{k}: {format_fact(v)}" for k, v in inputs.data.items()), ""]
    lines += ["| | kind | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, result in rows.items():
        kind = "fusion" if name in inputs.fusions else (result.kind or "model")
        cells = []
        for col in columns:
            value = result.test.get(col)
            text = format_value(value)
            cells.append(f"**{text}**" if name in tops.get(col, ()) else text)
        cells = [name.replace("|", "\\|"), kind, *cells]  # a | in a name would split the row
        lines.append("| " + " | ".join(cells) + " |")
    single = inputs.models[best].test.get(SELECT_METRIC, math.nan)
    by = f"{split} {SELECT_METRIC}"
    lines += ["", f"Best single model (by {by}): {best}, test {SELECT_METRIC} {format_value(single)}."]
    if inputs.fusions:
        name, fusion = max(inputs.fusions.items(), key=lambda kv: kv[1].test.get(SELECT_METRIC, -math.inf))
        value = fusion.test.get(SELECT_METRIC, math.nan)
        change = f" ({(value / single - 1):+.1%})" if is_finite(single) and single > 0 else ""
        lines.append(f"Best fusion: {name}, test {SELECT_METRIC} {format_value(value)}{change}.")
    return "\n".join(lines) + "\n"


def best_per_column(rows: dict[str, ModelResult], columns: Sequence[str]) -> dict[str, set[str]]:
    """Names holding the highest finite test value of each metric column (several on a tie)."""
    tops: dict[str, set[str]] = {}
    for col in columns:
        if col.endswith("users"):  # a count, not a quality
            continue
        values = {n: r.test.get(col) for n, r in rows.items() if is_finite(r.test.get(col))}
        if values:
            top = max(values.values())
            tops[col] = {n for n, v in values.items() if v == top}
    return tops


def write_report(out: Path, inputs: ReportInput) -> dict[str, Path]:
    """Write report.html, metrics.json and summary.md into `out`; return their paths."""
    from foundrec.eval.report_html import render_html  # matplotlib is loaded only when a page is drawn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "metrics": out / "metrics.json", "summary": out / "summary.md"}
    paths["metrics"].write_text(json.dumps(summary_json(inputs), indent=2))
    paths["summary"].write_text(summary_markdown(inputs))
    paths["html"].write_text(render_html(inputs), encoding="utf-8")
    return paths


def read_runs(run_dirs: Sequence[Path], title: str | None = None) -> ReportInput:
    """Results of `foundrec train` folders, named by folder, in the given order; one dataset only.

    Runs of one model class with several parameter counts become the scaling plot's points. Popularity
    profiles come from metrics.json; runs written before it recorded them need the caller to rank again
    (see eval/popularity.py).
    """
    models: dict[str, ModelResult] = {}
    data: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    popularity: dict[str, Any] = {}
    for run_dir in map(Path, run_dirs):
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file():
            raise FoundrecError(
                f"{run_dir} has no metrics.json; pass folders written by `foundrec train` that finished"
            )
        metrics = json.loads(metrics_file.read_text())
        if "test" not in metrics:
            raise FoundrecError(f"{metrics_file} has no test metrics; is it a single-model run folder?")
        if data and metrics.get("data", {}).get("source") != data.get("source"):
            raise FoundrecError(
                f"{run_dir} ran on {metrics.get('data', {}).get('source')}, not {data.get('source')}; "
                "a report compares runs on one dataset"
            )
        data, protocol = data or metrics.get("data", {}), protocol or metrics.get("protocol", {})
        popularity = popularity or metrics.get("popularity", {})
        epochs_file = run_dir / "epochs.json"
        name = run_dir.resolve().name
        if name in models:
            raise FoundrecError(f"two run folders are named {name}; a report names models by folder")
        models[name] = ModelResult(
            test=metrics["test"],
            valid=metrics.get("valid", {}),
            kind=metrics.get("model", ""),
            epochs=json.loads(epochs_file.read_text()) if epochs_file.is_file() else [],
            params=metrics.get("params"),
            train_seconds=metrics.get("train_seconds"),
            popularity=_deciles(metrics.get("popularity", {}), popularity.get("k")),
        )
    source = Path(str(data.get("source", ""))).parent.name or "runs"
    return ReportInput(
        title=title or f"foundrec report: {source}",
        models=models,
        catalogue_popularity=popularity.get("training_interactions"),
        popularity_k=popularity.get("k", 10),
        data=data,
        protocol=protocol,
        scaling=_scaling_points(models),
    )


def _deciles(profile: dict[str, Any], k: int | None) -> list[float] | None:
    """A run's recorded profile, if it counted the same top-K as the report's first run."""
    return profile.get("deciles") if profile.get("k") == k else None


def _scaling_points(models: dict[str, ModelResult]) -> list[ScalingPoint]:
    """Points of the model class that ran at the most distinct sizes (at least two), else none."""
    sizes: dict[str, set[int]] = {}
    for m in models.values():
        if m.params:
            sizes.setdefault(m.kind, set()).add(m.params)
    kind = max(sizes, key=lambda k: len(sizes[k]), default=None)
    if kind is None or len(sizes[kind]) < 2:
        return []
    return [
        ScalingPoint(n, m.params, m.valid.get(SELECT_METRIC, math.nan), m.test.get(SELECT_METRIC))
        for n, m in models.items()
        if m.kind == kind and m.params
    ]


def is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "–"
    if isinstance(value, int):
        return f"{value:,}"
    return "–" if value is None else str(value)


def format_fact(value: Any) -> str:
    """Dataset facts: four significant digits (a density of 0.000734 stays readable)."""
    return f"{value:.4g}" if isinstance(value, float) else format_value(value)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
