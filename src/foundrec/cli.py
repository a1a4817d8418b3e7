"""`foundrec`: thin command line over the library; errors print a message and what to do, not a traceback."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from foundrec.config import DataConfig, RunConfig, load_config
from foundrec.errors import FoundrecError
from foundrec.eval.report import SHOWN  # the columns a results table shows, in the report too

app = typer.Typer(
    help="Pretrained sequential recommenders: data, training, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Inspect and fetch datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

DataDirOpt = typer.Option(
    None, "--data-dir", help="Folder with the datasets (default $FOUNDREC_DATA or ../shared/data)."
)
FormatOpt = typer.Option(None, "--format", help="csv|tsv|parquet|jsonl|seqlines, for a file path.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
# Column mapping for a file path (data stats, train)
DelimiterOpt = typer.Option(None, help="Field delimiter, e.g. '::'.")
UserColOpt = typer.Option(None, help="Column with user ids.")
ItemColOpt = typer.Option(None, help="Column with item ids.")
TimeColOpt = typer.Option(None, help="Column with timestamps.")
RatingColOpt = typer.Option(None, help="Column with ratings.")
NoHeaderOpt = typer.Option(False, "--no-header", help="The file has no header line.")


def _fail(exc: FoundrecError) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(2)


def _data_config(
    data: str | None,
    data_dir: str | None,
    fmt: str | None,
    delimiter: str | None,
    user_col: str | None,
    item_col: str | None,
    time_col: str | None,
    rating_col: str | None,
    no_header: bool,
) -> dict[str, Any]:
    """CLI data options as config keys; a name from the registry or a file path."""
    from foundrec.data.datasets import REGISTRY

    base: dict[str, Any] = {"data__data_dir": data_dir}
    if data in REGISTRY or data == "synthetic":
        base["data__dataset"] = data
    elif data is not None:  # None: the config file's dataset stands
        base["data__path"] = data
    base.update(
        data__format=fmt,
        data__delimiter=delimiter,
        data__columns__user=user_col,
        data__columns__item=item_col,
        data__columns__timestamp=time_col,
        data__columns__rating=rating_col,
        data__header=False if no_header else None,
    )
    return base


@data_app.command("stats")
def data_stats(
    dataset: str = typer.Argument(
        ..., help="Registry name (beauty, sports, ml-100k, ml-1m, synthetic) or a file."
    ),
    data_dir: str | None = DataDirOpt,
    fmt: str | None = FormatOpt,
    delimiter: str | None = DelimiterOpt,
    user_col: str | None = UserColOpt,
    item_col: str | None = ItemColOpt,
    time_col: str | None = TimeColOpt,
    rating_col: str | None = RatingColOpt,
    no_header: bool = NoHeaderOpt,
    config: Path | None = typer.Option(None, help="TOML config with a [data] section."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting, e.g. data.kcore=5."),
    as_json: bool = JsonOpt,
) -> None:
    """Users, items, interactions, history lengths and malformed rows of a dataset."""
    from foundrec.data.datasets import load_dataset

    try:
        cfg = load_config(
            config,
            set_,
            **_data_config(
                dataset, data_dir, fmt, delimiter, user_col, item_col, time_col, rating_col, no_header
            ),
        )
        start = time.perf_counter()
        loaded = load_dataset(cfg.data)
    except FoundrecError as exc:
        _fail(exc)
    stats: dict[str, Any] = {"source": loaded.source, **loaded.interactions.stats()}
    if loaded.report is not None:
        stats.update(
            rows_read=loaded.report.rows,
            bad_rows=loaded.report.bad,
            bad_reasons=dict(loaded.report.reasons),
            bad_examples=[str(b) for b in loaded.report.examples],
        )
    stats["seconds"] = round(time.perf_counter() - start, 3)
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    table = Table(title=f"{dataset}", show_header=False)
    for key, value in stats.items():
        if key != "bad_examples":
            table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    Console().print(table)
    for example in stats.get("bad_examples", [])[:10]:
        console.print(f"[yellow]bad row[/] {example}", highlight=False)


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="ml-100k or ml-1m."),
    data_dir: str | None = DataDirOpt,
    base_url: str | None = typer.Option(None, help="Mirror to download from (default: GroupLens)."),
) -> None:
    """Download a public MovieLens archive, check its published MD5, unpack it into the data folder."""
    from foundrec.data.datasets import data_dir as resolve_dir
    from foundrec.data.download import download

    with Progress(
        TextColumn(f"downloading {name}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("download", total=None)
        try:
            target = download(
                name,
                resolve_dir(data_dir),
                base_url,
                progress=lambda done, total: bar.update(task, completed=done, total=total or None),
            )
        except FoundrecError as exc:
            _fail(exc)
    console.print(f"[green]ok[/] {name} in {target}")


@app.command()
def train(
    model: str = typer.Argument(..., help="pop, itemknn, bpr, mlp, sasrec or hstu."),
    data: str | None = typer.Option(
        None, "--data", help="Registry name or a file path (default: the config's dataset, else beauty)."
    ),
    split: str | None = typer.Option(None, "--split", help="loo (default) or temporal."),
    config: Path | None = typer.Option(None, help="TOML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting: params.dim=64, train.seed=1, ..."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/MODEL-DATA)."),
    data_dir: str | None = DataDirOpt,
    fmt: str | None = FormatOpt,
    delimiter: str | None = DelimiterOpt,
    user_col: str | None = UserColOpt,
    item_col: str | None = ItemColOpt,
    time_col: str | None = TimeColOpt,
    rating_col: str | None = RatingColOpt,
    no_header: bool = NoHeaderOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a model, pick its best epoch on validation, test once, write DIR/metrics.json."""
    from foundrec.experiment import train_run

    try:
        cfg = load_config(
            config,
            set_,
            model=model,
            split__method=split,
            **_data_config(
                data, data_dir, fmt, delimiter, user_col, item_col, time_col, rating_col, no_header
            ),
        )
        if cfg.data.dataset is None and cfg.data.path is None:
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"dataset": "beauty"})})
        out = out or Path("runs") / f"{cfg.model}-{cfg.data.dataset or Path(str(cfg.data.path)).stem}"
        with _epoch_bar(f"training {cfg.model}") as show:

            def on_model(m: Any) -> None:
                console.print(f"{m.name}: {m.n_parameters():,} parameters")

            metrics = train_run(cfg, out, on_epoch=lambda log, total: show("", log, total), on_model=on_model)
    except FoundrecError as exc:
        _fail(exc)
    _report(metrics, as_json, f"{cfg.model} on {cfg.data.dataset or cfg.data.path}: {out}")


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A folder written by `foundrec train`."), as_json: bool = JsonOpt
) -> None:
    """Evaluate a saved run again on its validation and test splits."""
    from foundrec.experiment import evaluate_run

    try:
        metrics = evaluate_run(run_dir)
    except FoundrecError as exc:
        _fail(exc)
    _report(metrics, as_json, str(run_dir))


@app.command()
def demo(
    data_dir: str | None = DataDirOpt,
    out: Path = typer.Option(Path("runs/demo"), help="Run folder of the demo's pipeline."),
) -> None:
    """The main job end to end, small: a pipeline on Beauty (synthetic data if Beauty is absent)."""
    from foundrec.config import FusionSettings, ModelSpec, PipelineConfig
    from foundrec.data.datasets import REGISTRY
    from foundrec.data.datasets import data_dir as resolve_dir
    from foundrec.pipeline import run_pipeline

    have_beauty = (resolve_dir(data_dir) / REGISTRY["beauty"].path).is_file()
    dataset = "beauty" if have_beauty else "synthetic"
    console.print(
        f"demo pipeline on [bold]{dataset}[/]"
        + ("" if have_beauty else " (Beauty not found in the data folder; see `foundrec data download`)")
    )
    synthetic = {} if have_beauty else {"users": 3000, "items": 1000}
    cfg = PipelineConfig(
        data=DataConfig(dataset=dataset, data_dir=data_dir, synthetic=synthetic),
        pretrain=ModelSpec(model="sasrec", params={"epochs": 6}),  # a short run: the full recipe is configs/
        baselines={
            "pop": ModelSpec(model="pop"),
            "itemknn": ModelSpec(model="itemknn"),
            "bpr": ModelSpec(model="bpr", params={"epochs": 10}),
        },
        fusion=FusionSettings(methods=["weighted", "rrf", "voting"], candidates=100),
    )
    try:
        run_pipeline(cfg, out, log=lambda m: console.print(m, highlight=False))
    except FoundrecError as exc:
        _fail(exc)
    print((out / "summary.md").read_text())
    console.print(f"[green]report[/] {out / 'report' / 'report.html'}  [green]bundle[/] {out / 'bundle'}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Folders written by `foundrec train`, on one dataset."),
    out: Path = typer.Option(..., "--out", help="Folder for report.html, metrics.json and summary.md."),
    popularity: bool = typer.Option(
        True,
        "--popularity/--no-popularity",
        help="Rank the test users again where a run has no recorded popularity profile.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """One HTML report (tables and plots), metrics.json and a Markdown summary from finished runs."""
    from foundrec.eval.report import read_runs, write_report

    try:
        if any(out.resolve() == d.resolve() for d in run_dirs):
            raise FoundrecError(f"--out {out} is one of the run folders; its metrics.json would be replaced")
        inputs = read_runs(run_dirs)
        if popularity:
            _add_popularity(inputs, run_dirs)
        paths = write_report(out, inputs)
    except FoundrecError as exc:
        _fail(exc)
    print(paths["metrics" if as_json else "summary"].read_text())
    console.print(f"[green]ok[/] {paths['html']}")


def _add_popularity(inputs: Any, run_dirs: list[Path]) -> None:
    """Runs saved before metrics.json held a popularity profile rank their test users again for one."""
    from foundrec.eval.popularity import interaction_shares, recommended_popularity
    from foundrec.experiment import prepare
    from foundrec.models import Recommender

    prepared: dict[str, Any] = {}
    for (name, result), run_dir in zip(inputs.models.items(), run_dirs, strict=True):
        if result.popularity is not None:
            continue
        if not (run_dir / "config.json").is_file() or not (run_dir / "model").is_dir():
            raise FoundrecError(f"{run_dir} has no config.json or model/; use --no-popularity")
        cfg = RunConfig.model_validate_json((run_dir / "config.json").read_text())
        key = cfg.model_dump_json(include={"data", "split", "eval"})
        p = prepared[key] = prepared.get(key) or prepare(cfg)
        inputs.popularity_k = min(inputs.popularity_k, max(p.evaluator.ks))
        console.print(f"ranking the test users with {name} for the popularity profile ...")
        model = Recommender.load(run_dir / "model")
        result.popularity = recommended_popularity(p.evaluator, model, p.split.test, inputs.popularity_k)
        inputs.catalogue_popularity = interaction_shares(p.evaluator.item_counts)


@app.command()
def pipeline(
    config: Path = typer.Argument(..., help="Pipeline TOML (configs/pipeline-*.toml)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/CONFIG-NAME)."),
    from_: str | None = typer.Option(None, "--from", help="Redo this stage and every later one."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting: pretrain.params.dim=128, ..."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """data -> pretrain -> baselines -> fuse -> evaluate -> report -> bundle; reruns skip finished stages."""
    from foundrec.config import load_pipeline_config
    from foundrec.pipeline import run_pipeline

    try:
        cfg = load_pipeline_config(
            config, set_ + ([f"data.data_dir={json.dumps(data_dir)}"] if data_dir else [])
        )
        out = out or Path("runs") / config.stem
        with _epoch_bar("pipeline") as show:
            summary = run_pipeline(
                cfg, out, from_, log=lambda m: console.print(m, highlight=False), on_epoch=show
            )
    except FoundrecError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            (out / "summary.md").read_text()
            if (out / "summary.md").is_file()
            else json.dumps(summary, indent=2)
        )


@app.command()
def bundle(
    run_dir: Path = typer.Argument(..., help="A folder written by `foundrec train`, or a saved fusion."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write (replaced if it holds a bundle)."),
    ranker: Path | None = typer.Option(
        None, "--ranker", help="A `foundrec finetune` ctr run whose head re-orders the candidates."
    ),
) -> None:
    """Export a trained run as a serving bundle: model, vocabularies, item vectors, checksums."""
    from foundrec.serve.bundle import export_bundle

    try:
        path = export_bundle(run_dir, out, ranker=ranker)
    except FoundrecError as exc:
        _fail(exc)
    console.print(f"[green]ok[/] {path}")


@app.command()
def serve(
    bundle_dir: Path = typer.Argument(..., help="A folder written by `foundrec bundle`."),
    store: str = typer.Option("sqlite:events.db", "--store", help="sqlite:PATH or redis://HOST:PORT/DB."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", help="Processes; each loads the bundle."),
) -> None:
    """Serve recommendations over HTTP (OpenAPI docs at /docs); needs FOUNDREC_TOKEN for writes."""
    import os

    import uvicorn

    if not (bundle_dir / "manifest.json").is_file():
        _fail(FoundrecError(f"{bundle_dir} is not a bundle; create one with `foundrec bundle RUN_DIR`"))
    if not os.environ.get("FOUNDREC_TOKEN"):
        _fail(FoundrecError("set FOUNDREC_TOKEN: write and admin endpoints need a bearer token"))
    os.environ.update(FOUNDREC_BUNDLE=str(bundle_dir.resolve()), FOUNDREC_STORE=store)
    uvicorn.run("foundrec.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers)


@app.command()
def finetune(
    pretrained_run: Path = typer.Argument(..., help="A `foundrec train sasrec --split temporal` run folder."),
    task: str = typer.Option("ctr", "--task", help="ctr (like = rating > 3) or rating."),
    mode: str = typer.Option("full", "--mode", help="full, lora, adapter or probe."),
    data: str = typer.Option("ml-100k", "--data", help="A registry dataset with ratings and timestamps."),
    protocol: str = typer.Option("temporal", "--protocol", help="temporal (80/10/10 by time) or tallrec."),
    shots: int | None = typer.Option(None, "--shots", help="Train on this many rows drawn from train."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw and of training."),
    scratch: bool = typer.Option(False, "--scratch", help="Same backbone, freshly initialised."),
    epochs: int = typer.Option(15, "--epochs", help="Upper bound; validation AUC stops sooner."),
    lr: float = typer.Option(3e-3, "--lr", help="Learning rate of the head and adapters."),
    backbone_lr: float = typer.Option(3e-4, "--backbone-lr", help="Learning rate of pretrained weights."),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows (histories) per step."),
    prior: bool = typer.Option(
        False, "--prior", help="Add the 3-weight path on pretrained signals (for few labels)."
    ),
    min_epochs: int = typer.Option(0, "--min-epochs", help="No early stop before this epoch."),
    lora_rank: int = typer.Option(4, "--lora-rank", help="LoRA rank (alpha = 2 x rank)."),
    lora_items: bool = typer.Option(False, "--lora-items", help="LoRA also adapts the item table."),
    rank_weight: float = typer.Option(
        0.0, "--rank-weight", help="Add a within-user ranking term (GAUC) with this weight to the BCE."
    ),
    user_rate: bool = typer.Option(
        False, "--user-rate", help="Give the head the history's like rate (a smooth user level)."
    ),
    bias_logreg: bool = typer.Option(
        False, "--bias-logreg", help="Start item biases at a logistic regression's item part."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/finetune-TASK-MODE)."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fine-tune a pretrained sequence model for CTR or rating; validation picks the epoch, test once."""
    from foundrec.models.heads import HeadConfig
    from foundrec.task_run import finetune_run, load_task
    from foundrec.train.finetune import FinetuneConfig

    out = out or Path("runs") / f"finetune-{task}-{'scratch' if scratch else mode}"
    try:
        if scratch and mode != "full":
            raise FoundrecError("--scratch trains every weight; use it with --mode full")
        rows, item_ids = load_task(DataConfig(dataset=data, data_dir=data_dir), protocol)
        head = HeadConfig(
            task=task,
            mode=mode,
            prior=prior,
            lora_rank=lora_rank,
            lora_alpha=2.0 * lora_rank,
            lora_items=lora_items,
            rank_weight=rank_weight,
            user_rate=user_rate,
            bias_logreg=bias_logreg,
        )
        ft = FinetuneConfig(
            lr=lr,
            backbone_lr=backbone_lr,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            min_epochs=min_epochs,
        )

        def on_model(m: Any) -> None:
            trainable, total = m.parameters_count()
            console.print(f"parameters: {trainable:,} trainable of {total:,} ({trainable / total:.1%})")

        def on_epoch(log: Any, total: int) -> None:
            console.print(f"epoch {log.epoch}/{total} loss {log.loss:.4f} valid {log.valid:.4f}")

        metrics = finetune_run(
            pretrained_run,
            rows,
            item_ids,
            head,
            ft,
            shots,
            scratch,
            out=out,
            on_model=on_model,
            on_epoch=on_epoch,
        )
    except FoundrecError as exc:
        _fail(exc)
    metrics.pop("curve")
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"{metrics['model']} {task} on {data} ({protocol}): {out}")
    table.add_column("metric")
    table.add_column("valid", justify="right")
    table.add_column("test", justify="right")
    for key, value in metrics["test"].items():
        table.add_row(key, f"{metrics['valid'][key]:.4f}", f"{value:.4f}")
    Console().print(table)


@contextmanager
def _epoch_bar(title: str) -> Iterator[Callable[[str, Any, int], None]]:
    """A progress bar over epochs; yields show(stage, epoch_log, total_epochs) ("" keeps the title)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(title, total=None, info="")

        def show(stage: str, log: Any, total: int) -> None:
            bar.update(
                task,
                description=stage or title,
                total=total,
                completed=log.epoch,
                info=f"epoch {log.epoch} loss {log.loss:.4f} valid ndcg@10 {log.valid:.4f}",
            )

        yield show


def _report(metrics: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    _table([metrics], title)


def _table(rows: list[dict[str, Any]], title: str) -> None:
    """Metrics down, models across: readable in an 80-column terminal."""
    table = Table(title=title)
    table.add_column("test")
    for m in rows:
        table.add_column(m["model"], justify="right")
    for key in SHOWN:
        table.add_row(key, *(f"{m['test'][key]:.4f}" for m in rows))
    table.add_row("params", *(f"{m.get('params', 0):,}" for m in rows))
    table.add_row("train s", *(f"{m.get('train_seconds', 0):.1f}" for m in rows))
    table.add_row("eval s", *(f"{m['eval_seconds']:.2f}" for m in rows))
    Console().print(table)


def main() -> None:  # pragma: no cover - entry point for `python -m foundrec.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
