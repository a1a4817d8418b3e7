"""The report's figures as PNG bytes (matplotlib, Agg backend): nothing is written to disk or shown.

Every figure colours a model the same way (`palette`), so a reader can follow one model across plots.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

DPI = 96  # the page shows figures at their pixel size; 96 keeps text sharp at about 100% zoom


def palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour per name, stable for the report's whole page."""
    cycle = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def metric_bars(values: Mapping[str, float], label: str, colors: Mapping[str, Any]) -> bytes:
    """Horizontal bars, one per model or fusion, best at the top."""
    ordered = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ordered) + 1.2))
    ax.barh([n for n, _ in ordered], [v for _, v in ordered], color=[colors[n] for n, _ in ordered])
    for i, (_, v) in enumerate(ordered):
        ax.annotate(f"{v:.4f}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set(xlabel=label)
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def training_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], colors: Mapping[str, Any]) -> bytes:
    """Training loss and validation NDCG@10 per epoch, one line per model (epochs.json rows)."""
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, epochs in curves.items():
        x = [e["epoch"] for e in epochs]
        loss_ax.plot(x, [e.get("loss") for e in epochs], color=colors[name], label=name)
        valid_ax.plot(x, [e.get("valid") for e in epochs], color=colors[name], label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    valid_ax.set(xlabel="epoch", ylabel="validation NDCG@10", title="validation NDCG@10")
    for ax in (loss_ax, valid_ax):
        ax.grid(alpha=0.3)
    valid_ax.legend(fontsize=8)
    return _png(fig)


def slice_bars(rows: Mapping[str, Mapping[str, float]], metric: str, colors: Mapping[str, Any]) -> bytes:
    """Grouped bars: `metric` on all users, long-tail targets and cold users, one bar per model."""
    groups = [("all", metric), ("long tail", f"tail/{metric}"), ("cold users", f"cold/{metric}")]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for i, (name, test) in enumerate(rows.items()):
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [test.get(key, float("nan")) for _, key in groups], width, color=colors[name], label=name)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.set(ylabel=f"test {metric}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return _png(fig)


def popularity_profile(
    catalogue: Sequence[float] | None,
    recommended: Mapping[str, Sequence[float]],
    k: int,
    colors: Mapping[str, Any],
) -> bytes:
    """Share of top-K slots per popularity decile per model, over the training interactions' share."""
    deciles = range(1, len(next(iter(recommended.values()))) + 1)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    if catalogue is not None:
        ax.bar(deciles, catalogue, color="0.85", label="training interactions")
    for name, shares in recommended.items():
        ax.plot(deciles, shares, "o-", color=colors[name], label=name, markersize=4)
    ax.set_xticks(list(deciles))
    ax.set(
        xlabel="item popularity decile (1 = the 10% most popular items)",
        ylabel=f"share of top-{k} slots",
    )
    ax.set_yscale("symlog", linthresh=0.01)  # the tail's small shares stay visible beside decile 1
    ax.set_ylim(0, 1.5)  # room above 100% for a model that recommends only the head
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return _png(fig)


def scaling(points: Sequence[Mapping[str, Any]]) -> bytes:
    """NDCG@10 against parameter count (log scale), validation and test, one marker per run."""
    ordered = sorted(points, key=lambda p: p["params"])
    params = [p["params"] for p in ordered]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(params, [p["valid"] for p in ordered], "o-", label="validation")
    if all(p.get("test") is not None for p in ordered):
        ax.plot(params, [p["test"] for p in ordered], "s--", label="test")
    for p in ordered:
        ax.annotate(
            p["name"], (p["params"], p["valid"]), xytext=(4, 4), textcoords="offset points", fontsize=8
        )
    ax.set(xscale="log", xlabel="parameters", ylabel="NDCG@10")
    ax.margins(0.12)  # room for the run names beside the end points
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
