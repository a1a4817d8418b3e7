"""Item and user side tables (titles, genres, demographics) from the MovieLens files."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from foundrec.data.readers import ReadReport, iter_lines
from foundrec.errors import DataError

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _split_lines(path: Path, delimiter: str, n_fields: int, min_fields: int | None = None) -> pl.DataFrame:
    """Lines split into fields f0..f{n-1}; rows with too few fields fail with file and line."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    report = ReadReport(str(path))
    chunks = [c for c in iter_lines(path, "latin-1", report)]
    if not chunks:
        raise DataError(f"file is empty: {path}")
    lines = pl.concat(chunks)
    parts = lines.select("line", pl.col("text").str.split(delimiter).alias("p"))
    short = parts.filter(pl.col("p").list.len() < (min_fields or n_fields))
    if short.height:
        line = short["line"][0]
        raise DataError(f"{path}:{line}: wrong column count: expected {n_fields} fields")
    return parts.select(pl.col("p").list.get(i, null_on_oob=True).alias(f"f{i}") for i in range(n_fields))


def _year(title: pl.Expr) -> pl.Expr:
    return title.str.extract(r"\((\d{4})\)\s*$").cast(pl.Int32, strict=False)


def read_ml100k_items(path: Path) -> pl.DataFrame:
    """u.item: id | title | release date | video date | URL | 19 genre flags."""
    raw = _split_lines(path, "|", 24)
    flags = [pl.when(pl.col(f"f{5 + i}") == "1").then(pl.lit(g)) for i, g in enumerate(ML100K_GENRES)]
    return raw.select(
        pl.col("f0").alias("item"),
        pl.col("f1").alias("title"),
        pl.concat_list(flags).list.drop_nulls().alias("genres"),
        _year(pl.col("f1")).alias("year"),
    )


def read_ml100k_users(path: Path) -> pl.DataFrame:
    """u.user: id | age | gender | occupation | zip."""
    raw = _split_lines(path, "|", 5)
    return raw.select(
        pl.col("f0").alias("user"),
        pl.col("f1").cast(pl.Int32, strict=False).alias("age"),
        pl.col("f2").alias("gender"),
        pl.col("f3").alias("occupation"),
        pl.col("f4").alias("zip"),
    )


def read_ml1m_items(path: Path) -> pl.DataFrame:
    """movies.dat: id::title::genre|genre."""
    raw = _split_lines(path, "::", 3)
    return raw.select(
        pl.col("f0").alias("item"),
        pl.col("f1").alias("title"),
        pl.col("f2").str.split("|").alias("genres"),
        _year(pl.col("f1")).alias("year"),
    )


def read_ml1m_users(path: Path) -> pl.DataFrame:
    """users.dat: id::gender::age::occupation::zip."""
    raw = _split_lines(path, "::", 5)
    return raw.select(
        pl.col("f0").alias("user"),
        pl.col("f2").cast(pl.Int32, strict=False).alias("age"),
        pl.col("f1").alias("gender"),
        pl.col("f3").alias("occupation"),
        pl.col("f4").alias("zip"),
    )
