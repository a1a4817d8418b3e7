"""The report: metrics.json contract, Markdown summary, run folders, the CLI, and the page in Chromium."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from typer.testing import CliRunner

from foundrec.cli import app
from foundrec.errors import FoundrecError
from foundrec.eval.report import (
    ModelResult,
    ReportInput,
    ScalingPoint,
    read_runs,
    summary_json,
    summary_markdown,
    write_report,
)

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<b>&"x'  # a model name that must come out escaped


def metrics(ndcg: float, **extra: float) -> dict[str, float]:
    base = {
        "hr@10": ndcg * 1.6,
        "ndcg@10": ndcg,
        "recall@20": ndcg * 2,
        "ndcg@20": ndcg * 1.1,
        "mrr": ndcg * 0.9,
        "users": 100,
        "coverage@5": 0.1,
        "coverage@10": 0.2,
        "tail/ndcg@10": ndcg / 2,
        "tail/hr@10": ndcg,
        "tail/users": 40,
        "cold/ndcg@10": ndcg / 3,
        "cold/hr@10": ndcg / 2,
        "cold/users": 30,
    }
    return base | extra


def curve(epochs: int, top: float) -> list[dict[str, float]]:
    return [
        {"epoch": e, "loss": 9 / e, "valid": top * (1 - 0.5**e), "seconds": 1.0} for e in range(1, epochs + 1)
    ]


def sample_input() -> ReportInput:
    """Valid and test disagree on the best single model, so the selection split shows."""
    deciles = [0.5, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.01, 0.01, 0.01]
    return ReportInput(
        title="report <test>",
        models={
            "sasrec": ModelResult(
                test=metrics(0.05),
                valid=metrics(0.07),
                kind="sasrec",
                epochs=curve(6, 0.07),
                popularity=deciles,
                params=900,
                train_seconds=12.5,
            ),
            "itemknn": ModelResult(
                test=metrics(0.06, **{"coverage@10": 0.4}), valid=metrics(0.06), kind="itemknn"
            ),
            HOSTILE: ModelResult(
                test=metrics(0.01, **{"cold/ndcg@10": math.nan}),
                valid=metrics(0.01),
                kind="pop",
                popularity=deciles,
            ),
        },
        fusions={
            "weighted": ModelResult(test=metrics(0.09), valid=metrics(0.08)),
            "rrf": ModelResult(metrics(0.055)),
        },
        catalogue_popularity=[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01],
        scaling=[ScalingPoint("small", 1_000, 0.03, 0.025), ScalingPoint("large", 100_000, 0.06, 0.05)],
        data={"source": "synthetic", "users": 100, "items": 50, "density": 0.000734},
        protocol={"split": "leave-one-out", "tail": "targets outside the 20% most popular"},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample drawn once: figures take seconds on a busy machine."""
    return write_report(tmp_path_factory.mktemp("report"), sample_input())


def test_metrics_json_contract_selects_on_validation_and_is_strict_json(report) -> None:
    text = report["metrics"].read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert set(data["models"]) == {"sasrec", "itemknn", HOSTILE}
    assert set(data["fusions"]) == {"weighted", "rrf"}
    assert set(data["models"]["sasrec"]) == {"valid", "test"}
    assert data["best_single"] == "sasrec" and data["best_single_by"] == "valid/ndcg@10"  # itemknn wins test
    assert data["models"][HOSTILE]["test"]["cold/ndcg@10"] is None  # NaN (empty slice) -> null
    assert set(data["popularity"]["deciles"]) == {"sasrec", HOSTILE} and data["popularity"]["k"] == 10


def test_best_single_falls_back_to_test_when_a_model_has_no_validation() -> None:
    inputs = sample_input()
    inputs.models["itemknn"].valid = {}
    assert summary_json(inputs)["best_single"] == "itemknn"
    assert summary_json(inputs)["best_single_by"] == "test/ndcg@10"


def test_markdown_marks_best_per_column_and_compares_fusion_to_best_single() -> None:
    md = summary_markdown(sample_input())
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "**0.0900**" in rows["weighted"]  # best test ndcg@10 of all rows
    assert "**" not in rows["sasrec"].split("|")[4]  # hr@10 of sasrec is not the best
    assert "**0.4000**" in rows["itemknn"]  # coverage@10
    assert "Best single model (by valid ndcg@10): sasrec, test ndcg@10 0.0500." in md
    assert "Best fusion: weighted, test ndcg@10 0.0900 (+80.0%)." in md


def test_html_is_self_contained_and_escapes_text(report) -> None:
    page = report["html"].read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # every resource inline
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert HOSTILE not in page and "&lt;b&gt;&amp;&quot;x" in page
    assert "<title>report &lt;test&gt;</title>" in page
    for section in ("metrics", "curves", "slices", "popularity", "coverage", "scaling", "protocol"):
        assert f'<section id="{section}">' in page
    # bars, curves, slices, popularity, scaling
    assert page.count('<img alt="') == 5


def test_slices_show_new_items_only_when_the_split_has_them(tmp_path) -> None:
    plain = ReportInput("plain", {"pop": ModelResult(metrics(0.01))}, protocol={"new": "NEWNOTE"})
    assert "new/ndcg@10" not in write_report(tmp_path / "a", plain)["html"].read_text()
    held = metrics(0.01, **{"new/ndcg@10": 0.002, "new/hr@10": 0.004, "new/users": 17})
    page = write_report(
        tmp_path / "b", ReportInput("held", {"sasrec": ModelResult(held)}, protocol={"new": "NEWNOTE"})
    )
    html = page["html"].read_text()
    assert "new/ndcg@10" in html and "new: NEWNOTE" in html


def test_html_without_curves_popularity_or_scaling_says_so(tmp_path) -> None:
    inputs = ReportInput("bare", {"pop": ModelResult(metrics(0.01))})
    page = write_report(tmp_path, inputs)["html"].read_text()
    assert "No model has a training curve." in page and "No top-K lists were recorded" in page
    assert 'id="scaling"' not in page


def write_run(folder: Path, model: str, ndcg: float, params: int, source: str = "beauty") -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "model": model,
                "params": params,
                "valid": metrics(ndcg),
                "test": metrics(ndcg),
                "train_seconds": 3.0,
                "data": {"source": f"/data/{source}/seq.txt", "users": 100},
                "protocol": {"split": "leave-one-out"},
            }
        )
    )
    (folder / "epochs.json").write_text(json.dumps(curve(3, ndcg)))
    return folder


def test_read_runs_names_by_folder_and_finds_scaling_points(tmp_path) -> None:
    dirs = [
        write_run(tmp_path / "small", "sasrec", 0.03, 1000),
        write_run(tmp_path / "large", "sasrec", 0.05, 9000),
        write_run(tmp_path / "knn", "itemknn", 0.04, 500),
    ]
    inputs = read_runs(dirs)
    assert list(inputs.models) == ["small", "large", "knn"]
    assert inputs.models["large"].kind == "sasrec" and len(inputs.models["large"].epochs) == 3
    assert [(p.name, p.params) for p in inputs.scaling] == [("small", 1000), ("large", 9000)]
    assert inputs.title == "foundrec report: beauty" and inputs.protocol == {"split": "leave-one-out"}
    assert read_runs(dirs[2:]).scaling == []  # one size: no scaling plot


def test_read_runs_refuses_unfinished_runs_and_mixed_datasets(tmp_path) -> None:
    good = write_run(tmp_path / "a", "pop", 0.01, 10)
    (tmp_path / "unfinished" / "checkpoint").mkdir(parents=True)
    with pytest.raises(FoundrecError, match="no metrics.json"):
        read_runs([good, tmp_path / "unfinished"])
    other = write_run(tmp_path / "b", "pop", 0.01, 10, source="ml-100k")
    with pytest.raises(FoundrecError, match="one dataset"):
        read_runs([good, other])


def test_cli_report_on_trained_runs_adds_popularity(tmp_path) -> None:
    runner = CliRunner()
    synth = ["--data", "synthetic", "--set", "data.synthetic.users=200", "--set", "data.synthetic.items=120"]
    for model in ("pop", "itemknn"):
        result = runner.invoke(app, ["train", model, *synth, "--out", str(tmp_path / model)])
        assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["report", str(tmp_path / "pop"), str(tmp_path / "itemknn"), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["models"]) == {"pop", "itemknn"} and data["fusions"] == {}
    page = (out / "report.html").read_text()
    section = page.split('<section id="popularity">')[1].split("</section>")[0]
    assert "top 10% items" in section  # the popularity table: top 10%, top 20%, bottom 50% of items
    shares = {
        name: [float(x) for x in re.findall(r"<td>([\d.]+)%</td>", row)]
        for name, row in re.findall(
            r'<td class="name">(\w+)</td><td class="name">\w+</td>(.*?)</tr>', section
        )
    }
    assert shares["pop"][0] > shares["itemknn"][0] and shares["pop"][2] == 0.0  # popularity stays in the head
    again = runner.invoke(app, ["report", str(tmp_path / "pop"), "--out", str(tmp_path / "pop")])
    assert again.exit_code == 2 and "would be replaced" in again.output


# Written into a copy of the page: counts images that failed to decode once everything has loaded.
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter((i) => !i.complete || i.naturalWidth === 0).length;
});</script>"""


def chromium(page: Path, tmp_path: Path, *args: str) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,3000",
    ]
    done = subprocess.run(
        [str(CHROMIUM), *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probed(html: Path, tmp_path: Path) -> tuple[str, int, int]:
    """The DOM after load, with the number of images and of broken ones."""
    copy = tmp_path / f"probe-{html.name}"
    copy.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(copy, tmp_path, "--dump-dom")
    found = re.search(r'data-images="(\d+)" data-broken="(\d+)"', dom)
    assert found, "the probe did not run: " + dom[:300]
    return dom, int(found.group(1)), int(found.group(2))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_page_renders_in_chromium_with_tables_and_images(report, tmp_path) -> None:
    html = report["html"]
    dom, images, broken = probed(html, tmp_path)
    assert (images, broken) == (5, 0)
    for text in ("Test metrics", "Training curves", "Slices: long tail and cold users", "Popularity bias"):
        assert text in dom
    assert dom.count("<table>") == 5 and "weighted" in dom and '&lt;b&gt;&amp;"x' in dom
    shot = tmp_path / "shot.png"
    chromium(html, tmp_path, f"--screenshot={shot}")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    top = pixels[:1500, :, :3]  # the tables and first plots: text, colours, not a blank page
    assert top.std() > 0.05 and (top < 0.5).mean() > 0.005


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_the_image_probe_detects_a_broken_image(tmp_path) -> None:
    html = tmp_path / "broken.html"
    html.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA"></body></html>')
    _, images, broken = probed(html, tmp_path)
    assert (images, broken) == (1, 1)
