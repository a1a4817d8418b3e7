"""Read interaction logs into a polars frame, reporting every malformed row by file, line and reason.

Delimited text, JSON lines and sequence lines are read in chunks of whole lines and split with polars
string kernels, so line numbers stay exact (blank lines and CRLF included) and multi-character
delimiters such as MovieLens' `::` work; Parquet is read batch by batch with pyarrow.
Output columns: `user`, `item` (strings), optional `timestamp`, `rating`, `label` (float64), `event`
(string), feature columns by their own names, and `line` (source line or row, keeps input order).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from foundrec.config import ColumnMap
from foundrec.errors import DataError

CHUNK_BYTES = 32 << 20
NUMERIC_FIELDS = ("timestamp", "rating", "label")
DEFAULT_DELIMITERS = {"csv": ",", "tsv": "\t"}
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int  # 1-based line (text) or row (Parquet)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ReadReport:
    """Counts of what was read and why rows were rejected; the first examples are kept verbatim."""

    file: str
    rows: int = 0
    bad: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return self.bad / self.rows if self.rows else 0.0

    def add_bad(self, lines: list[int], reasons: list[str]) -> None:
        self.bad += len(lines)
        for line, reason in zip(lines, reasons, strict=True):
            self.reasons[reason.split(":")[0]] += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(BadRow(self.file, line, reason))

    def summary(self) -> str:
        head = f"{self.file}: {self.bad} of {self.rows} rows malformed ({self.bad_fraction:.2%})"
        return "\n".join([head, *(f"  {row}" for row in self.examples[:5])])


@dataclass(frozen=True)
class TableSource:
    """A file and how to read it."""

    path: Path
    format: str
    columns: ColumnMap = field(default_factory=ColumnMap)
    delimiter: str | None = None
    header: bool | None = None
    names: tuple[str, ...] | None = None
    encoding: str = "utf-8"


def read_interactions(source: TableSource, max_bad_fraction: float = 0.01) -> tuple[pl.DataFrame, ReadReport]:
    """Read, validate and type a log; fail only when the malformed share exceeds `max_bad_fraction`."""
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"file is empty: {path}")
    report = ReadReport(str(path))
    readers = {
        "csv": _read_delimited,
        "tsv": _read_delimited,
        "jsonl": _read_jsonl,
        "seqlines": _read_seqlines,
        "parquet": _read_parquet,
    }
    if source.format not in readers:
        raise DataError(f"unknown format {source.format!r} for {path}; use one of {', '.join(readers)}")
    frames = list(readers[source.format](source, report))
    if report.rows == 0:
        raise DataError(f"file has no data rows: {path}")
    if report.bad_fraction > max_bad_fraction:
        raise DataError(
            f"{report.summary()}\nThis exceeds the limit of {max_bad_fraction:.2%}; fix the file, check the "
            "format and column options, or raise data.max_bad_fraction."
        )
    return pl.concat(frames, how="vertical_relaxed"), report


def iter_lines(path: Path, encoding: str, report: ReadReport) -> Iterator[pl.DataFrame]:
    """Chunks of non-empty lines as frames (`line`: 1-based number, `text`); bad encoding is reported."""
    first_line = 1
    with open(path, "rb") as handle:
        rest = b""
        while True:
            block = handle.read(CHUNK_BYTES)
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, rest = (data[:cut], data[cut:]) if cut else (b"", data)
                if not data:
                    continue
            if not data:
                return
            yield _decode_lines(data, first_line, encoding, report)
            first_line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            if not block:
                return


def _decode_lines(data: bytes, first_line: int, encoding: str, report: ReadReport) -> pl.DataFrame:
    try:
        text, broken = data.decode(encoding), False
    except UnicodeDecodeError:
        text, broken = data.decode(encoding, errors="replace"), True
    lines = pl.Series("text", [text]).str.split("\n").explode()
    if text.endswith("\n"):
        lines = lines.head(len(lines) - 1)
    frame = pl.DataFrame(
        {"line": pl.int_range(first_line, first_line + len(lines), eager=True), "text": lines}
    )
    frame = frame.with_columns(pl.col("text").str.strip_chars_end("\r"))
    frame = frame.filter(pl.col("text").str.strip_chars().str.len_bytes() > 0)
    if broken:
        bad = frame.filter(pl.col("text").str.contains("\ufffd", literal=True))
        report.rows += bad.height
        report.add_bad(bad["line"].to_list(), [f"bad encoding: not valid {encoding}"] * bad.height)
        frame = frame.filter(~pl.col("text").str.contains("\ufffd", literal=True))
    return frame


def _wanted(columns: ColumnMap) -> dict[str, str]:
    """Output field -> source column, for the fields the mapping uses."""
    wanted = {"user": columns.user, "item": columns.item}
    for name in (*NUMERIC_FIELDS, "event"):
        if getattr(columns, name) is not None:
            wanted[name] = getattr(columns, name)
    wanted.update({name: name for name in columns.features})
    return wanted


def _read_delimited(source: TableSource, report: ReadReport) -> Iterator[pl.DataFrame]:
    delimiter = source.delimiter or DEFAULT_DELIMITERS.get(source.format, ",")
    header = source.header if source.header is not None else source.names is None
    names = list(source.names) if source.names else None
    header_done = not header
    wanted = _wanted(source.columns)
    for chunk in iter_lines(source.path, source.encoding, report):
        if chunk.height == 0:
            continue
        if not header_done:  # the first non-empty line; given `names` win over it
            names = names or [_clean(name) for name in chunk["text"][0].split(delimiter)]
            chunk, header_done = chunk.slice(1), True
        if chunk.height == 0:
            continue
        if names is None:
            names = [str(i) for i in range(len(chunk["text"][0].split(delimiter)))]
        _check_columns(wanted, names, source.path, "header" if header else "column names")
        fields = chunk.with_columns(pl.col("text").str.split(delimiter).alias("parts"))
        count_ok = pl.col("parts").list.len() == len(names)
        selected = {
            out: pl.col("parts").list.get(names.index(col), null_on_oob=True) for out, col in wanted.items()
        }
        frame = fields.select(
            "line",
            pl.when(~count_ok)
            .then(
                pl.format(
                    "wrong column count: expected {} fields, found {}",
                    pl.lit(len(names)),
                    pl.col("parts").list.len(),
                )
            )
            .alias("_count_error"),
            *(expr.str.strip_chars(' "').alias(out) for out, expr in selected.items()),
        )
        yield _validate(frame, wanted, report)


def _read_jsonl(source: TableSource, report: ReadReport) -> Iterator[pl.DataFrame]:
    wanted = _wanted(source.columns)
    for chunk in iter_lines(source.path, source.encoding, report):
        values = {
            out: pl.col("text").str.json_path_match(f"$['{col}']").alias(out) for out, col in wanted.items()
        }
        valid = pl.col("text").str.json_path_match("$").is_not_null()
        frame = chunk.select(
            "line",
            pl.when(~valid).then(pl.lit("invalid JSON")).alias("_count_error"),
            *values.values(),
        )
        if report.rows == 0 and frame.height:
            _check_json_columns(chunk, wanted, source.path)
        yield _validate(frame, wanted, report)


def _check_json_columns(chunk: pl.DataFrame, wanted: dict[str, str], path: Path) -> None:
    """Fail once, clearly, when a mapped key appears in none of the first chunk's objects."""
    for out, col in wanted.items():
        found = chunk.select(pl.col("text").str.json_path_match(f"$['{col}']").is_not_null().any()).item()
        if not found:
            keys = sorted({key for text in chunk["text"].head(100) for key in _json_keys(text)})
            raise DataError(
                f"column {col!r} (mapped to {out}) not found in any JSON object of {path}; "
                f"available: {', '.join(keys)}. Set the column mapping (e.g. --user-col, --item-col)."
            )


def _json_keys(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return list(value) if isinstance(value, dict) else []


def _read_seqlines(source: TableSource, report: ReadReport) -> Iterator[pl.DataFrame]:
    """`user item item ...` per line; an item's position is its timestamp."""
    for chunk in iter_lines(source.path, source.encoding, report):
        parts = chunk.select("line", pl.col("text").str.strip_chars().str.split(" ").alias("parts"))
        parts = parts.with_columns(pl.col("parts").list.eval(pl.element().filter(pl.element() != "")))
        short = parts.filter(pl.col("parts").list.len() < 2)
        report.rows += chunk.height
        report.add_bad(short["line"].to_list(), ["missing field: no items after the user id"] * short.height)
        good = parts.filter(pl.col("parts").list.len() >= 2).select(
            "line",
            pl.col("parts").list.first().alias("user"),
            pl.col("parts").list.slice(1).alias("item"),
        )
        good = good.with_columns(pl.int_ranges(0, pl.col("item").list.len()).alias("timestamp"))
        yield good.explode("item", "timestamp").select(
            "user", "item", pl.col("timestamp").cast(pl.Float64), "line"
        )


def _read_parquet(source: TableSource, report: ReadReport) -> Iterator[pl.DataFrame]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"cannot read Parquet file {source.path}: {exc}") from None
    wanted = _wanted(source.columns)
    _check_columns(wanted, parquet.schema_arrow.names, source.path, "schema")
    first_row = 1
    for batch in parquet.iter_batches(batch_size=1 << 20, columns=sorted(set(wanted.values()))):
        frame = pl.from_arrow(batch)
        frame = frame.select(
            pl.int_range(first_row, first_row + frame.height).alias("line"),
            pl.lit(None, dtype=pl.String).alias("_count_error"),
            *(pl.col(col).cast(pl.String).str.strip_chars().alias(out) for out, col in wanted.items()),
        )
        first_row += frame.height
        yield _validate(frame, wanted, report)


def _validate(frame: pl.DataFrame, wanted: dict[str, str], report: ReadReport) -> pl.DataFrame:
    """Give each row its first problem (column count, missing value, non-numeric) and drop bad rows."""
    numeric = [name for name in NUMERIC_FIELDS if name in wanted]
    typed = frame.with_columns(
        pl.col(name).cast(pl.Float64, strict=False).alias(f"_{name}") for name in numeric
    )
    reason = pl.col("_count_error")
    for out, col in wanted.items():
        missing = pl.col(out).is_null() | (pl.col(out).str.len_bytes() == 0)
        reason = reason.fill_null(pl.when(missing).then(pl.lit(f"missing field: no value for {col!r}")))
    for name in numeric:
        not_number = pl.col(f"_{name}").is_null() | pl.col(f"_{name}").is_nan()
        reason = reason.fill_null(
            pl.when(not_number).then(
                pl.format("non-numeric value: '{}' in field '{}'", pl.col(name), pl.lit(wanted[name]))
            )
        )
    typed = typed.with_columns(reason.alias("_reason"))
    report.rows += typed.height
    bad = typed.filter(pl.col("_reason").is_not_null())
    report.add_bad(bad["line"].to_list(), bad["_reason"].to_list())
    good = typed.filter(pl.col("_reason").is_null())
    keep = [pl.col(f"_{name}").alias(name) if name in numeric else pl.col(name) for name in wanted]
    return good.select(*keep, "line")


def _check_columns(wanted: dict[str, str], names: list[str], path: Path, where: str) -> None:
    for out, col in wanted.items():
        if col not in names:
            raise DataError(
                f"column {col!r} (mapped to {out}) not found in the {where} of {path}; "
                f"available: {', '.join(names)}. Set the column mapping (e.g. --user-col, --item-col)."
            )


def _clean(name: str) -> str:
    return name.lstrip("\ufeff").strip().strip('"')
