"""Every input format reads the same log to the same frame; real MovieLens slices and side tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundrec.config import ColumnMap, DataConfig
from foundrec.data.datasets import REGISTRY, load_dataset, source_for
from foundrec.data.prepare import build_interactions
from foundrec.data.readers import TableSource, read_interactions
from foundrec.data.side_tables import (
    read_ml1m_items,
    read_ml1m_users,
    read_ml100k_items,
    read_ml100k_users,
)
from foundrec.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "ml-100k" / "u.data").is_file(), reason="no ../shared/data")

# user, item, timestamp (= position within the user, so seqlines can express it), rating, genre
LOG = [
    ("u1", "a", 0, 4.0, "x"),
    ("u1", "b", 1, 3.5, "y"),
    ("u2", "b", 0, 5.0, "x"),
    ("u1", "c", 2, 1.0, "z"),
    ("u2", "d", 1, 2.0, "y"),
    ("u3", "a", 0, 3.0, "x"),
]
EXPECTED = [(u, i, float(t), r) for u, i, t, r, _ in LOG]


def canon(frame: pl.DataFrame, rating: bool = True) -> list[tuple]:
    cols = ["user", "item", "timestamp", *(["rating"] if rating else [])]
    return sorted(frame.select(cols).rows())


def expected(rating: bool = True) -> list[tuple]:
    return sorted(row if rating else row[:3] for row in EXPECTED)


def read(path: Path, fmt: str, columns: ColumnMap, **kw):
    frame, report = read_interactions(TableSource(path, fmt, columns, **kw))
    assert report.bad == 0
    return frame, report


def test_csv_with_header_and_column_mapping(tmp_path):
    path = tmp_path / "log.csv"
    text = "visitor,when,product,stars,unused\n" + "".join(f"{u},{t},{i},{r},zz\n" for u, i, t, r, _ in LOG)
    path.write_text(text)
    columns = ColumnMap(user="visitor", item="product", timestamp="when", rating="stars")
    frame, report = read(path, "csv", columns)
    assert frame.columns == ["user", "item", "timestamp", "rating", "line"]
    assert frame.schema["rating"] == pl.Float64 and frame.schema["timestamp"] == pl.Float64
    assert frame.rows() == [(u, i, float(t), r, n + 2) for n, (u, i, t, r, _) in enumerate(LOG)]
    assert (report.rows, report.bad) == (6, 0)


@pytest.mark.parametrize("head", ['"user","item"', "\ufeffuser,item", " user , item "])
def test_csv_quoted_values_bom_or_padded_header(tmp_path, head):
    path = tmp_path / "log.csv"
    path.write_bytes(f'{head}\n"u1", "a"\n'.encode())
    frame, _ = read(path, "csv", ColumnMap())
    assert frame.rows() == [("u1", "a", 2)]


def test_csv_bom_and_quoted_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes('\ufeff"user","item"\n"u1", "a"\n'.encode())
    frame, _ = read(path, "csv", ColumnMap())
    assert frame.rows() == [("u1", "a", 2)]


def test_tsv_without_header_using_names(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, t, r, _ in LOG))
    frame, _ = read(path, "tsv", ColumnMap(timestamp="ts", rating="r"), names=("user", "item", "r", "ts"))
    assert frame["line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert canon(frame) == expected()


def test_headerless_csv_mapped_by_position(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("".join(f"{t};{u};{i};{r}\n" for u, i, t, r, _ in LOG))
    columns = ColumnMap(user="1", item="2", timestamp="0", rating="3")
    frame, _ = read(path, "csv", columns, delimiter=";", header=False)
    assert frame["line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert canon(frame) == expected()


def test_movielens_double_colon_delimiter(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, t, r, _ in LOG))
    spec = REGISTRY["ml-1m"]
    frame, _ = read(path, spec.format, spec.columns, delimiter=spec.delimiter, names=spec.names)
    assert canon(frame) == expected()


def test_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "uid": [u for u, *_ in LOG],
            "iid": [i for _, i, *_ in LOG],
            "ts": pa.array([t for _, _, t, *_ in LOG], pa.int64()),
            "r": pa.array([r for *_, r, _ in LOG], pa.float32()),
            "genre": [g for *_, g in LOG],
        }
    )
    pq.write_table(table, path, row_group_size=4)
    columns = ColumnMap(user="uid", item="iid", timestamp="ts", rating="r", features=["genre"])
    frame, report = read(path, "parquet", columns)
    assert frame["line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert canon(frame) == expected()
    assert frame["genre"].to_list() == [g for *_, g in LOG]
    assert report.rows == 6


def test_parquet_integer_ids_become_strings(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user": [10, 20], "item": [7, 8]}), path)
    frame, _ = read(path, "parquet", ColumnMap())
    assert frame.schema["user"] == pl.String
    assert frame.select("user", "item").rows() == [("10", "7"), ("20", "8")]


def test_jsonl(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(
        "".join(
            json.dumps({"u": u, "i": i, "t": t, "r": r, "genre": g, "extra": [1, 2]}) + "\n"
            for u, i, t, r, g in LOG
        )
    )
    columns = ColumnMap(user="u", item="i", timestamp="t", rating="r", features=["genre"])
    frame, _ = read(path, "jsonl", columns)
    assert frame["line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert canon(frame) == expected()
    assert frame["genre"].to_list() == [g for *_, g in LOG]


def test_jsonl_numeric_ids_are_strings(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"user": 1, "item": 22, "timestamp": 1.5e3}\n')
    frame, _ = read(path, "jsonl", ColumnMap(timestamp="timestamp"))
    assert frame.select("user", "item", "timestamp").rows() == [("1", "22", 1500.0)]


def test_seqlines_positions_as_timestamps(tmp_path):
    path = tmp_path / "seq.txt"
    users: dict[str, list[str]] = {}
    for u, i, *_ in LOG:
        users.setdefault(u, []).append(i)
    path.write_text("".join(f"{u} {' '.join(items)}\n" for u, items in users.items()))
    frame, report = read(path, "seqlines", ColumnMap())
    assert frame.columns == ["user", "item", "timestamp", "line"]
    assert canon(frame, rating=False) == expected(rating=False)
    assert frame.filter(pl.col("user") == "u2")["line"].to_list() == [2, 2]
    assert report.rows == 3  # lines, not interactions


def test_feature_columns_kept_as_strings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,device,price\nu1,a,phone,3\nu2,b,web,4.5\n")
    frame, _ = read(path, "csv", ColumnMap(features=["device", "price"]))
    assert frame.columns == ["user", "item", "device", "price", "line"]
    assert frame.select("device", "price").rows() == [("phone", "3"), ("web", "4.5")]


def test_all_formats_build_the_same_sequences(tmp_path):
    """CSV, TSV, `::`, Parquet, JSONL and seqlines of one log give identical vocabularies and sequences."""
    users: dict[str, list[str]] = {}
    for u, i, *_ in LOG:
        users.setdefault(u, []).append(i)
    csv_rows = "".join(f"{u},{i},{t}\n" for u, i, t, *_ in LOG)
    (tmp_path / "a.csv").write_text("user,item,timestamp\n" + csv_rows)
    (tmp_path / "a.tsv").write_text("".join(f"{u}\t{i}\t{t}\n" for u, i, t, *_ in LOG))
    (tmp_path / "a.dat").write_text("".join(f"{u}::{i}::{t}\n" for u, i, t, *_ in LOG))
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"user": u, "item": i, "timestamp": t}) + "\n" for u, i, t, *_ in LOG)
    )
    pq.write_table(
        pa.table(
            {"user": [r[0] for r in LOG], "item": [r[1] for r in LOG], "timestamp": [r[2] for r in LOG]}
        ),
        tmp_path / "a.parquet",
    )
    (tmp_path / "a.txt").write_text("".join(f"{u} {' '.join(items)}\n" for u, items in users.items()))
    names = ("user", "item", "timestamp")
    ts = ColumnMap(timestamp="timestamp")
    sources = [
        TableSource(tmp_path / "a.csv", "csv", ts),
        TableSource(tmp_path / "a.tsv", "tsv", ts, names=names),
        TableSource(tmp_path / "a.dat", "csv", ts, delimiter="::", names=names),
        TableSource(tmp_path / "a.jsonl", "jsonl", ts),
        TableSource(tmp_path / "a.parquet", "parquet", ts),
        TableSource(tmp_path / "a.txt", "seqlines"),
    ]
    built = [build_interactions(read_interactions(s)[0]) for s in sources]
    for data in built:
        assert data.users.ids == ["u1", "u2", "u3"]
        assert data.items.ids == ["a", "b", "c", "d"]
        assert data.sequences.offsets.tolist() == [0, 3, 5, 6]
        assert data.sequences.items.tolist() == [0, 1, 2, 1, 3, 0]
        assert data.sequences.timestamps.tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 0.0]


def test_source_for_explicit_path_guesses_format(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"user": "a", "item": "b"}\n')
    source, spec = source_for(DataConfig(path=str(path)))
    assert (source.format, spec) == ("jsonl", None)
    (tmp_path / "log.xyz").write_text("a,b\n")
    with pytest.raises(DataError, match="cannot tell the format of"):
        source_for(DataConfig(path=str(tmp_path / "log.xyz")))
    with pytest.raises(DataError, match=re.escape(f"file not found: {tmp_path / 'nope.csv'}")):
        source_for(DataConfig(path=str(tmp_path / "nope.csv")))


def test_registry_dataset_missing_points_at_download(tmp_path):
    with pytest.raises(DataError) as err:
        source_for(DataConfig(dataset="ml-100k", data_dir=str(tmp_path)))
    assert str(err.value) == (
        f"ml-100k: {tmp_path / 'ml-100k' / 'u.data'} not found; run `foundrec data download ml-100k`"
    )


# --- real data slices ------------------------------------------------------------------------------------


@needs_shared
def test_ml100k_slice_through_registry_source(tmp_path):
    lines = (SHARED / "ml-100k" / "u.data").read_bytes().splitlines(keepends=True)[:500]
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(b"".join(lines))
    source, spec = source_for(DataConfig(dataset="ml-100k", data_dir=str(tmp_path)))
    assert spec is REGISTRY["ml-100k"]
    assert (source.format, source.names, source.encoding) == (
        "tsv",
        ("user", "item", "rating", "timestamp"),
        "latin-1",
    )
    frame, report = read_interactions(source)
    assert (report.rows, report.bad, frame.height) == (500, 0, 500)
    assert frame.row(0) == ("196", "242", 881250949.0, 3.0, 1)
    reference = [line.decode().split("\t") for line in lines]
    assert frame.select("user", "item").rows() == [(u, i) for u, i, _, _ in reference]
    assert frame["rating"].to_list() == [float(r) for _, _, r, _ in reference]
    assert frame["timestamp"].to_list() == [float(t) for *_, t in reference]
    assert frame["line"].to_list() == list(range(1, 501))


@needs_shared
def test_ml100k_slice_load_dataset_with_side_tables(tmp_path):
    lines = (SHARED / "ml-100k" / "u.data").read_bytes().splitlines(keepends=True)[:500]
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(b"".join(lines))
    loaded = load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path)))
    assert loaded.interactions.sequences.nnz == 500
    assert loaded.items is None and loaded.users is None  # side tables not in tmp_path
    assert loaded.interactions.users.ids[0] == "196"


@needs_shared
def test_beauty_slice_as_seqlines(tmp_path):
    lines = (SHARED / "amazon-beauty" / "sequences.txt").read_text().splitlines()[:200]
    (tmp_path / "amazon-beauty").mkdir()
    (tmp_path / "amazon-beauty" / "sequences.txt").write_text("\n".join(lines) + "\n")
    source, _ = source_for(DataConfig(dataset="beauty", data_dir=str(tmp_path)))
    frame, report = read_interactions(source)
    assert report.rows == 200
    ref = [
        (p[0], item, float(pos), n + 1)
        for n, line in enumerate(lines)
        for p in [line.split()]
        for pos, item in enumerate(p[1:])
    ]
    assert frame.rows() == ref


# --- side tables ------------------------------------------------------------------------------------------


@needs_shared
def test_read_ml100k_items():
    items = read_ml100k_items(SHARED / "ml-100k" / "u.item")
    assert items.height == 1682
    assert items.columns == ["item", "title", "genres", "year"]
    assert items.row(0) == ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], 1995)
    assert items.row(1) == ("2", "GoldenEye (1995)", ["Action", "Adventure", "Thriller"], 1995)
    assert items["item"].to_list() == [str(i) for i in range(1, 1683)]
    # latin-1 titles decode
    assert items.filter(pl.col("item") == "543")["title"].item() == "Misérables, Les (1995)"
    assert items.filter(pl.col("item") == "267").row(0) == ("267", "unknown", ["unknown"], None)


@needs_shared
def test_read_ml100k_users():
    users = read_ml100k_users(SHARED / "ml-100k" / "u.user")
    assert users.height == 943
    assert users.row(0) == ("1", 24, "M", "technician", "85711")
    assert users.schema["age"] == pl.Int32


@needs_shared
def test_read_ml1m_items():
    items = read_ml1m_items(SHARED / "ml-1m" / "movies.dat")
    assert items.height == 3883
    assert items.row(0) == ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], 1995)
    assert items.row(1) == ("2", "Jumanji (1995)", ["Adventure", "Children's", "Fantasy"], 1995)
    assert items["year"].null_count() == 0
    assert items.filter(pl.col("item") == "73")["title"].item() == "Misérables, Les (1995)"


@needs_shared
def test_read_ml1m_users():
    users = read_ml1m_users(SHARED / "ml-1m" / "users.dat")
    assert users.height == 6040
    assert users.row(0) == ("1", 1, "F", "10", "48067")
    assert users.row(1) == ("2", 56, "M", "16", "70072")
    assert set(np.unique(users["gender"].to_numpy())) == {"F", "M"}


def test_side_table_short_line_reports_file_and_line(tmp_path):
    path = tmp_path / "movies.dat"
    path.write_bytes(b"1::Toy Story (1995)::Comedy\n\n2::Broken\n")
    with pytest.raises(DataError) as err:
        read_ml1m_items(path)
    assert str(err.value) == f"{path}:3: wrong column count: expected 3 fields"


def test_side_table_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_ml1m_users(tmp_path / "users.dat")
    (tmp_path / "users.dat").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        read_ml1m_users(tmp_path / "users.dat")
