"""report.html: one file with inline CSS and base64 PNG figures, readable offline and safe to e-mail.

Every piece of text from the input (names, dataset facts, protocol) goes through html.escape.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape

from foundrec.eval import plots
from foundrec.eval.report import (
    SELECT_METRIC,
    SHOWN,
    ModelResult,
    ReportInput,
    best_per_column,
    best_single,
    format_fact,
    format_value,
    is_finite,
)

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; white-space: nowrap; }
td.best { font-weight: bold; background: #d8f0d8; }
tr.fusion td.name { font-style: italic; }
.note { color: #555; font-size: 13px; } img { display: block; margin: 8px 0; max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; } dt { font-weight: bold; }
"""


def render_html(inputs: ReportInput) -> str:
    colors = plots.palette(list(inputs.rows()))
    parts = [
        f"<h1>{escape(inputs.title)}</h1>",
        _facts(inputs),
        *_metrics(inputs, colors),
        *_curves(inputs, colors),
        *_slices(inputs, colors),
        *_popularity(inputs, colors),
        *_coverage(inputs),
        *_scaling(inputs),
        *_protocol(inputs),
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(inputs.title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    """Rows of (tr class, pre-escaped <td> cells)."""
    head = "".join(f'<th class="{"name" if i == 0 else ""}">{escape(h)}</th>' for i, h in enumerate(header))
    body = "".join(f'<tr class="{cls}">{"".join(cells)}</tr>' for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _name_cells(name: str, result: ModelResult, inputs: ReportInput) -> list[str]:
    kind = "fusion" if name in inputs.fusions else escape(result.kind or "model")
    return [f'<td class="name">{escape(name)}</td>', f'<td class="name">{kind}</td>']


def _metric_table(inputs: ReportInput, columns: Sequence[str], extra: bool = False) -> str:
    """Test values per model and fusion; the best of each column in bold on green."""
    rows = inputs.rows()
    tops = best_per_column(rows, columns)
    out = []
    for name, result in rows.items():
        cells = _name_cells(name, result, inputs)
        for col in columns:
            cls = ' class="best"' if name in tops.get(col, ()) else ""
            cells.append(f"<td{cls}>{escape(format_value(result.test.get(col)))}</td>")
        if extra:
            cells.append(f"<td>{escape(format_value(result.valid.get(SELECT_METRIC)))}</td>")
            cells.append(f"<td>{escape(format_value(result.params))}</td>")
            seconds = result.train_seconds
            cells.append(f"<td>{escape('–' if seconds is None else f'{seconds:,.1f}')}</td>")
        out.append(("fusion" if name in inputs.fusions else "model", cells))
    header = ["", "kind", *columns] + ([f"valid {SELECT_METRIC}", "params", "train s"] if extra else [])
    return _table(header, out)


def _facts(inputs: ReportInput) -> str:
    if not inputs.data:
        return ""
    items = "".join(
        f"<dt>{escape(str(k))}</dt><dd>{escape(format_fact(v))}</dd>" for k, v in inputs.data.items()
    )
    return f"<dl>{items}</dl>"


def _metrics(inputs: ReportInput, colors: dict) -> list[str]:
    best, split = best_single(inputs)
    values = {
        n: r.test[SELECT_METRIC] for n, r in inputs.rows().items() if is_finite(r.test.get(SELECT_METRIC))
    }
    return [
        '<section id="metrics"><h2>Test metrics</h2>',
        _metric_table(inputs, SHOWN, extra=True),
        f'<p class="note">Bold on green: best in its column. Fusions in italics. Best single model by '
        f"{escape(split)} {SELECT_METRIC}: <b>{escape(best)}</b>.</p>",
        _img(plots.metric_bars(values, f"test {SELECT_METRIC}", colors), f"test {SELECT_METRIC} per model")
        if values
        else "",
        "</section>",
    ]


def _curves(inputs: ReportInput, colors: dict) -> list[str]:
    curves = {n: r.epochs for n, r in inputs.rows().items() if r.epochs}
    if not curves:
        return [
            '<section id="curves"><h2>Training curves</h2><p>No model has a training curve.</p></section>'
        ]
    without = [n for n, r in inputs.models.items() if not r.epochs]
    note = f"Fitted in one pass, no curve: {', '.join(without)}." if without else ""
    return [
        '<section id="curves"><h2>Training curves</h2>',
        _img(plots.training_curves(curves, colors), "training loss and validation NDCG@10 per epoch"),
        f'<p class="note">{escape(note)}</p></section>',
    ]


def _slices(inputs: ReportInput, colors: dict) -> list[str]:
    columns = ["ndcg@10", "hr@10", "users", "tail/ndcg@10", "tail/hr@10", "tail/users"]
    columns += ["cold/ndcg@10", "cold/hr@10", "cold/users"]
    tests = {n: r.test for n, r in inputs.rows().items()}
    slices = ["tail", "cold"]
    if any(t.get("new/users", 0) > 0 for t in tests.values()):  # only splits with new items have them
        columns += ["new/ndcg@10", "new/hr@10", "new/users"]
        slices.append("new")
    note = "; ".join(f"{s}: {inputs.protocol[s]}" for s in slices if inputs.protocol.get(s))
    return [
        '<section id="slices"><h2>Slices: long tail and cold users</h2>',
        _metric_table(inputs, columns),
        f'<p class="note">{escape(note)}</p>',
        _img(plots.slice_bars(tests, "ndcg@10", colors), "test NDCG@10 on all users, long tail, cold users"),
        "</section>",
    ]


def _popularity(inputs: ReportInput, colors: dict) -> list[str]:
    profiles = {n: r.popularity for n, r in inputs.rows().items() if r.popularity}
    head = '<section id="popularity"><h2>Popularity bias</h2>'
    if not profiles:
        return [head, "<p>No top-K lists were recorded for this run.</p></section>"]
    k = inputs.popularity_k
    rows = []
    for name, shares in profiles.items():
        cells = _name_cells(name, inputs.rows()[name], inputs)
        cells += [f"<td>{s:.1%}</td>" for s in (shares[0], sum(shares[:2]), sum(shares[5:]))]
        rows.append(("", cells))
    if inputs.catalogue_popularity:
        c = inputs.catalogue_popularity
        cells = ['<td class="name">training interactions</td>', "<td></td>"]
        rows.append(("", cells + [f"<td>{s:.1%}</td>" for s in (c[0], sum(c[:2]), sum(c[5:]))]))
    header = ["", "kind", "top 10% items", "top 20% items", "bottom 50% items"]
    return [
        head,
        f"<p>Where each model's top-{k} slots on the test users fall among the items sorted by training "
        "popularity, beside where the training interactions fall.</p>",
        _table(header, rows),
        _img(
            plots.popularity_profile(inputs.catalogue_popularity, profiles, k, colors), "popularity profile"
        ),
        "</section>",
    ]


def _coverage(inputs: ReportInput) -> list[str]:
    columns = sorted(
        {c for r in inputs.rows().values() for c in r.test if c.startswith("coverage@")},
        key=lambda c: int(c.split("@")[1]),
    )
    return [
        '<section id="coverage"><h2>Catalogue coverage</h2>',
        _metric_table(inputs, columns) if columns else "<p>No coverage was measured.</p>",
        '<p class="note">coverage@K: share of the catalogue in at least one test user\'s top-K list.</p>',
        "</section>",
    ]


def _scaling(inputs: ReportInput) -> list[str]:
    if len(inputs.scaling) < 2:
        return []
    rows = [
        (
            "",
            [
                f'<td class="name">{escape(p.name)}</td>',
                f"<td>{p.params:,}</td>",
                f"<td>{escape(format_value(p.valid))}</td>",
                f"<td>{escape(format_value(p.test))}</td>",
            ],
        )
        for p in sorted(inputs.scaling, key=lambda p: p.params)
    ]
    points = [vars(p) for p in inputs.scaling]
    return [
        '<section id="scaling"><h2>Scaling</h2>',
        _table(["", "params", f"valid {SELECT_METRIC}", f"test {SELECT_METRIC}"], rows),
        _img(plots.scaling(points), "NDCG@10 against parameter count"),
        "</section>",
    ]


def _protocol(inputs: ReportInput) -> list[str]:
    if not inputs.protocol:
        return []
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in inputs.protocol.items())
    return [f'<section id="protocol"><h2>Protocol</h2><dl>{items}</dl></section>']
