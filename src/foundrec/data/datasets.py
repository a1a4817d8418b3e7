"""Dataset registry and the one entry point that turns a DataConfig into cleaned interactions."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from foundrec.config import ColumnMap, DataConfig
from foundrec.data import side_tables
from foundrec.data.prepare import Interactions, build_interactions, clean
from foundrec.data.readers import ReadReport, TableSource, read_interactions
from foundrec.data.synthetic import SyntheticConfig, generate
from foundrec.errors import DataError

ML_COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class DatasetSpec:
    """A known dataset: where its log lies under the data directory and how to read it."""

    path: str
    format: str
    delimiter: str | None = None
    names: tuple[str, ...] | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    items_table: tuple[str, Callable[[Path], pl.DataFrame]] | None = None
    users_table: tuple[str, Callable[[Path], pl.DataFrame]] | None = None
    download: str | None = None  # archive name for `foundrec data download`
    description: str = ""


REGISTRY: dict[str, DatasetSpec] = {
    "beauty": DatasetSpec(
        "amazon-beauty/sequences.txt",
        "seqlines",
        description="Amazon Beauty, S3-Rec preprocessing (5-core, positions as time)",
    ),
    "sports": DatasetSpec(
        "amazon-sports/sequences.txt",
        "seqlines",
        description="Amazon Sports and Outdoors, S3-Rec preprocessing (5-core, positions as time)",
    ),
    "ml-100k": DatasetSpec(
        "ml-100k/u.data",
        "tsv",
        names=ML_COLUMNS,
        columns=ColumnMap(timestamp="timestamp", rating="rating"),
        items_table=("ml-100k/u.item", side_tables.read_ml100k_items),
        users_table=("ml-100k/u.user", side_tables.read_ml100k_users),
        download="ml-100k",
        description="MovieLens 100K ratings with titles, genres and demographics",
    ),
    "ml-1m": DatasetSpec(
        "ml-1m/ratings.dat",
        "csv",
        delimiter="::",
        names=ML_COLUMNS,
        columns=ColumnMap(timestamp="timestamp", rating="rating"),
        items_table=("ml-1m/movies.dat", side_tables.read_ml1m_items),
        users_table=("ml-1m/users.dat", side_tables.read_ml1m_users),
        download="ml-1m",
        description="MovieLens 1M ratings with titles, genres and demographics",
    ),
}


def data_dir(explicit: str | Path | None = None) -> Path:
    """--data-dir, else $FOUNDREC_DATA, else ../shared/data beside the repository (or the working folder)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("FOUNDREC_DATA"):
        return Path(os.environ["FOUNDREC_DATA"])
    repo = Path(__file__).resolve().parents[3]
    for base in (repo, Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data"


@dataclass
class LoadedData:
    interactions: Interactions
    report: ReadReport | None  # None for generated data
    items: pl.DataFrame | None = None  # side table keyed by raw item id
    users: pl.DataFrame | None = None
    source: str = ""


def source_for(cfg: DataConfig) -> tuple[TableSource, DatasetSpec | None]:
    """The file to read for a registry name or an explicit path."""
    if cfg.path:
        if not Path(cfg.path).is_file():
            known = ", ".join([*REGISTRY, "synthetic"])
            raise DataError(f"file not found: {cfg.path} (and it is not a dataset name; known: {known})")
        fmt = cfg.format or _guess_format(Path(cfg.path))
        source = TableSource(
            Path(cfg.path),
            fmt,
            cfg.columns,
            cfg.delimiter,
            cfg.header,
            tuple(cfg.names) if cfg.names else None,
            cfg.encoding,
        )
        return source, None
    if cfg.dataset not in REGISTRY:
        known = ", ".join([*REGISTRY, "synthetic"])
        raise DataError(f"unknown dataset {cfg.dataset!r}; known: {known}, or pass a file path")
    spec = REGISTRY[cfg.dataset]
    path = data_dir(cfg.data_dir) / spec.path
    if not path.is_file():
        hint = (
            f"run `foundrec data download {spec.download}`"
            if spec.download
            else "set --data-dir or FOUNDREC_DATA to the folder that holds it"
        )
        raise DataError(f"{cfg.dataset}: {path} not found; {hint}")
    columns = spec.columns
    return TableSource(
        path,
        spec.format,
        columns,
        spec.delimiter,
        None,
        spec.names,
        "latin-1" if spec.format != "seqlines" else "utf-8",
    ), spec


def load_dataset(cfg: DataConfig) -> LoadedData:
    """Read (or generate), clean and index the interactions the config names."""
    if cfg.dataset == "synthetic" and not cfg.path:
        synthetic = SyntheticConfig(**cfg.synthetic)
        return LoadedData(_prepare(generate(synthetic), cfg), None, source=f"synthetic {synthetic}")
    source, spec = source_for(cfg)
    frame, report = read_interactions(source, cfg.max_bad_fraction)
    loaded = LoadedData(_prepare(frame, cfg), report, source=str(source.path))
    if spec is not None:
        root = data_dir(cfg.data_dir)
        if spec.items_table and (root / spec.items_table[0]).is_file():
            loaded.items = spec.items_table[1](root / spec.items_table[0])
        if spec.users_table and (root / spec.users_table[0]).is_file():
            loaded.users = spec.users_table[1](root / spec.users_table[0])
    return loaded


def _prepare(frame: pl.DataFrame, cfg: DataConfig) -> Interactions:
    return build_interactions(clean(frame, cfg.dedup, cfg.kcore, cfg.min_rating))


def _guess_format(path: Path) -> str:
    suffixes = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".txt": "seqlines",
        ".data": "tsv",
        ".dat": "csv",
    }
    fmt = suffixes.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {path}; pass --format csv|tsv|parquet|jsonl|seqlines")
    return fmt
