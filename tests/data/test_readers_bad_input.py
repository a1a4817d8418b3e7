"""Malformed input: every rejected row is reported with its exact file, line and reason."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundrec.config import ColumnMap
from foundrec.data import readers
from foundrec.data.readers import MAX_EXAMPLES, BadRow, TableSource, read_interactions
from foundrec.errors import DataError

HEADER = b"user,item,rating,timestamp\n"
FULL = ColumnMap(rating="rating", timestamp="timestamp")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, fmt: str = "csv", columns: ColumnMap = FULL, max_bad_fraction: float = 1.0, **kw):
    return read_interactions(TableSource(path, fmt, columns, **kw), max_bad_fraction=max_bad_fraction)


def rows(frame) -> list[tuple]:
    return [tuple(r) for r in frame.select("user", "item", "rating", "timestamp", "line").iter_rows()]


# --- one test per kind of bad row -------------------------------------------------------------------


def test_missing_field_empty_value(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + b"u1,i1,4,100\nu2,,3,200\nu3,i3,5,300\n")
    frame, report = read(path)
    assert report.examples == [BadRow(str(path), 3, "missing field: no value for 'item'")]
    assert (report.rows, report.bad) == (3, 1)
    assert report.reasons == {"missing field": 1}
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 2), ("u3", "i3", 5.0, 300.0, 4)]


def test_missing_field_names_the_source_column(tmp_path):
    path = write(tmp_path, "log.csv", b"uid,movie\nu1,m1\nu2,  \nu3,m3\n")
    frame, report = read(path, columns=ColumnMap(user="uid", item="movie"))
    assert report.examples == [BadRow(str(path), 3, "missing field: no value for 'movie'")]
    assert frame["item"].to_list() == ["m1", "m3"]


@pytest.mark.parametrize("field", ["rating", "timestamp"])
def test_non_numeric_value(tmp_path, field):
    bad = b"u2,i2,x,200" if field == "rating" else b"u2,i2,3,x"
    path = write(tmp_path, "log.csv", HEADER + b"u1,i1,4,100\n" + bad + b"\nu3,i3,5,300\n")
    frame, report = read(path)
    assert report.examples == [BadRow(str(path), 3, f"non-numeric value: 'x' in field '{field}'")]
    assert report.reasons == {"non-numeric value": 1}
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 2), ("u3", "i3", 5.0, 300.0, 4)]


def test_non_numeric_value_names_the_source_column(tmp_path):
    path = write(tmp_path, "log.csv", b"u,i,stars\na,b,1.5\nc,d,NaN\ne,f,two\n")
    frame, report = read(path, columns=ColumnMap(user="u", item="i", rating="stars"))
    assert [(e.line, e.reason) for e in report.examples] == [
        (3, "non-numeric value: 'NaN' in field 'stars'"),
        (4, "non-numeric value: 'two' in field 'stars'"),
    ]
    assert frame["rating"].to_list() == [1.5]


def test_bad_encoding(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + b"u1,i1,4,100\nu\xff\xfe2,i2,3,200\nu3,i3,5,300\n")
    frame, report = read(path)
    assert report.examples == [BadRow(str(path), 3, "bad encoding: not valid utf-8")]
    assert report.reasons == {"bad encoding": 1}
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 2), ("u3", "i3", 5.0, 300.0, 4)]


def test_bad_encoding_is_not_reported_for_latin1(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + b"u1,caf\xe9,4,100\n")
    frame, report = read(path, encoding="latin-1")
    assert report.bad == 0
    assert frame["item"].to_list() == ["café"]


@pytest.mark.parametrize(("row", "found"), [(b"u2,i2,3", 3), (b"u2,i2,3,200,extra", 5), (b"u2", 1)])
def test_wrong_column_count(tmp_path, row, found):
    path = write(tmp_path, "log.csv", HEADER + b"u1,i1,4,100\n" + row + b"\nu3,i3,5,300\n")
    frame, report = read(path)
    assert report.examples == [BadRow(str(path), 3, f"wrong column count: expected 4 fields, found {found}")]
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 2), ("u3", "i3", 5.0, 300.0, 4)]


def test_wrong_column_count_wins_over_other_problems(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + b"u1,,x\n")
    _, report = read(path)
    assert [e.reason for e in report.examples] == ["wrong column count: expected 4 fields, found 3"]


def test_invalid_json_line(tmp_path):
    data = (
        b'{"user": "u1", "item": "i1", "rating": 4, "timestamp": 100}\n'
        b'{"user": "u2", "item": \n'
        b'{"user": "u3", "item": "i3", "rating": 5, "timestamp": 300}\n'
    )
    path = write(tmp_path, "log.jsonl", data)
    frame, report = read(path, "jsonl")
    assert report.examples == [BadRow(str(path), 2, "invalid JSON")]
    assert report.reasons == {"invalid JSON": 1}
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 1), ("u3", "i3", 5.0, 300.0, 3)]


def test_jsonl_missing_key_and_non_numeric(tmp_path):
    data = (
        b'{"user": "u1", "item": "i1", "rating": 4, "timestamp": 100}\n'
        b'{"user": "u2", "rating": 3, "timestamp": 200}\n'
        b'{"user": "u3", "item": "i3", "rating": "x", "timestamp": 300}\n'
        b'{"user": "u4", "item": null, "rating": 1, "timestamp": 400}\n'
    )
    path = write(tmp_path, "log.jsonl", data)
    frame, report = read(path, "jsonl")
    assert [(e.line, e.reason) for e in report.examples] == [
        (2, "missing field: no value for 'item'"),
        (3, "non-numeric value: 'x' in field 'rating'"),
        (4, "missing field: no value for 'item'"),
    ]
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 1)]


def test_seqlines_user_without_items(tmp_path):
    path = write(tmp_path, "seq.txt", b"u1 a b\nu2\nu3 c\nu4   \n")
    frame, report = read(path, "seqlines", columns=ColumnMap())
    assert report.examples == [
        BadRow(str(path), 2, "missing field: no items after the user id"),
        BadRow(str(path), 4, "missing field: no items after the user id"),
    ]
    assert (report.rows, report.bad) == (4, 2)
    assert frame.select("user", "item", "timestamp", "line").rows() == [
        ("u1", "a", 0.0, 1),
        ("u1", "b", 1.0, 1),
        ("u3", "c", 0.0, 3),
    ]


# --- exact line numbers with blank lines, CRLF and chunk boundaries -----------------------------------

MIXED = (
    HEADER.replace(b"\n", b"\r\n")
    + b"u1,i1,4,100\r\n"  # 2 good
    + b"\r\n"  # 3 blank
    + b"u2,,3,200\r\n"  # 4 missing item
    + b"\n"  # 5 blank
    + b"   \n"  # 6 whitespace only
    + b"u3,i3,x,300\n"  # 7 non-numeric rating
    + b"u4,i4,5\r\n"  # 8 wrong count
    + b"u5,i5,1,\xff500\r\n"  # 9 bad encoding
    + b"u6,i6,2,600\r\n"  # 10 good
    + b"u7,i7,3,y\n"  # 11 non-numeric timestamp
    + b"u8,i8,1,800"  # 12 good, no final newline
)
MIXED_BAD = {
    4: "missing field: no value for 'item'",
    7: "non-numeric value: 'x' in field 'rating'",
    8: "wrong column count: expected 4 fields, found 3",
    9: "bad encoding: not valid utf-8",
    11: "non-numeric value: 'y' in field 'timestamp'",
}


@pytest.mark.parametrize("chunk_bytes", [None, 7, 16, 40])
def test_line_numbers_exact_with_blank_lines_crlf_and_chunks(tmp_path, monkeypatch, chunk_bytes):
    if chunk_bytes is not None:
        monkeypatch.setattr(readers, "CHUNK_BYTES", chunk_bytes)
    path = write(tmp_path, "mixed.csv", MIXED)
    frame, report = read(path)
    assert {e.line: e.reason for e in report.examples} == MIXED_BAD
    assert all(e.file == str(path) for e in report.examples)
    assert (report.rows, report.bad) == (8, 5)
    assert rows(frame) == [
        ("u1", "i1", 4.0, 100.0, 2),
        ("u6", "i6", 2.0, 600.0, 10),
        ("u8", "i8", 1.0, 800.0, 12),
    ]
    assert report.reasons == {
        "missing field": 1,
        "non-numeric value": 2,
        "wrong column count": 1,
        "bad encoding": 1,
    }


@pytest.mark.parametrize("chunk_bytes", [None, 5])
def test_seqlines_line_numbers_with_crlf_and_blanks(tmp_path, monkeypatch, chunk_bytes):
    if chunk_bytes is not None:
        monkeypatch.setattr(readers, "CHUNK_BYTES", chunk_bytes)
    path = write(tmp_path, "seq.txt", b"\r\nu1 a b\r\n\r\nu2\r\nu3 c d e\r\n\nu\xff x\nu5 f")
    frame, report = read(path, "seqlines", columns=ColumnMap())
    assert {e.line: e.reason for e in report.examples} == {
        4: "missing field: no items after the user id",
        7: "bad encoding: not valid utf-8",
    }
    assert frame.select("user", "item", "timestamp", "line").rows() == [
        ("u1", "a", 0.0, 2),
        ("u1", "b", 1.0, 2),
        ("u3", "c", 0.0, 5),
        ("u3", "d", 1.0, 5),
        ("u3", "e", 2.0, 5),
        ("u5", "f", 0.0, 8),
    ]


def test_jsonl_line_numbers_with_crlf_and_blanks(tmp_path):
    data = b'\r\n{"user": "a", "item": "b"}\r\n\r\n{oops\r\n{"user": "c", "item": "d"}\r\n'
    path = write(tmp_path, "log.jsonl", data)
    frame, report = read(path, "jsonl", columns=ColumnMap())
    assert report.examples == [BadRow(str(path), 4, "invalid JSON")]
    assert frame.select("user", "item", "line").rows() == [("a", "b", 2), ("c", "d", 5)]


def test_examples_are_capped_but_all_bad_rows_counted(tmp_path):
    body = b"".join(b"u%d,,1,1\n" % i for i in range(30))
    path = write(tmp_path, "log.csv", HEADER + body + b"ok,i,1,1\n")
    frame, report = read(path)
    assert (report.rows, report.bad) == (31, 30)
    assert len(report.examples) == MAX_EXAMPLES
    assert [e.line for e in report.examples] == list(range(2, 2 + MAX_EXAMPLES))
    assert report.reasons == {"missing field": 30}
    assert frame["user"].to_list() == ["ok"]


# --- the bad-row limit ---------------------------------------------------------------------------------


def _log_with_bad(tmp_path: Path, good: int, bad: int) -> Path:
    lines = [b"u%d,i%d,1,%d\n" % (i, i, i) for i in range(good)] + [b"b%d,i,1,x\n" % i for i in range(bad)]
    return write(tmp_path, "log.csv", HEADER + b"".join(lines))


def test_bad_fraction_over_default_limit_fails(tmp_path):
    path = _log_with_bad(tmp_path, good=99, bad=2)  # 2 / 101 = 1.98% > 1%
    with pytest.raises(DataError) as err:
        read_interactions(TableSource(path, "csv", FULL))
    message = str(err.value)
    assert message.startswith(f"{path}: 2 of 101 rows malformed (1.98%)\n")
    assert f"  {path}:101: non-numeric value: 'x' in field 'timestamp'" in message
    assert "This exceeds the limit of 1.00%" in message
    assert "data.max_bad_fraction" in message


def test_bad_fraction_at_or_under_default_limit_succeeds(tmp_path):
    path = _log_with_bad(tmp_path, good=99, bad=1)  # exactly 1%: not over the limit
    frame, report = read_interactions(TableSource(path, "csv", FULL))
    assert (report.rows, report.bad, frame.height) == (100, 1, 99)
    assert report.bad_fraction == pytest.approx(0.01)
    assert report.examples == [BadRow(str(path), 101, "non-numeric value: 'x' in field 'timestamp'")]


def test_bad_fraction_limit_is_configurable(tmp_path):
    path = _log_with_bad(tmp_path, good=6, bad=4)
    frame, report = read_interactions(TableSource(path, "csv", FULL), max_bad_fraction=0.5)
    assert frame.height == 6
    with pytest.raises(DataError, match=re.escape("exceeds the limit of 30.00%")) as err:
        read_interactions(TableSource(path, "csv", FULL), max_bad_fraction=0.3)
    assert str(path) in str(err.value)


# --- whole-file problems -------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.csv", b"")
    with pytest.raises(DataError) as err:
        read(path)
    assert str(err.value) == f"file is empty: {path}"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        read(path)
    assert str(err.value) == f"file not found: {path}"


@pytest.mark.parametrize(
    ("fmt", "data"),
    [("csv", HEADER), ("csv", HEADER + b"\n\r\n  \n"), ("jsonl", b"\n\n"), ("seqlines", b"\r\n \n")],
)
def test_no_data_rows(tmp_path, fmt, data):
    path = write(tmp_path, f"log.{fmt}", data)
    with pytest.raises(DataError) as err:
        read(path, fmt, columns=ColumnMap())
    assert str(err.value) == f"file has no data rows: {path}"


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_blank_only_delimited_file_has_no_data_rows(tmp_path, fmt):
    path = write(tmp_path, f"log.{fmt}", b"\n\r\n   \n")
    with pytest.raises(DataError, match="file has no data rows"):
        read(path, fmt, columns=ColumnMap())


def test_unknown_format(tmp_path):
    path = write(tmp_path, "log.xml", b"<x/>")
    with pytest.raises(DataError) as err:
        read(path, "xml")
    assert str(err.value) == f"unknown format 'xml' for {path}; use one of csv, tsv, jsonl, seqlines, parquet"


# --- unknown mapped columns: one error naming the column and what is available ---------------------------


def test_unknown_column_csv_header(tmp_path):
    path = write(tmp_path, "log.csv", b"uid,iid,stars\nu1,i1,4\nu2,i2,5\n")
    with pytest.raises(DataError) as err:
        read(path, columns=ColumnMap(user="uid", item="movie"))
    assert str(err.value) == (
        f"column 'movie' (mapped to item) not found in the header of {path}; available: uid, iid, stars. "
        "Set the column mapping (e.g. --user-col, --item-col)."
    )


def test_unknown_column_headerless_names(tmp_path):
    path = write(tmp_path, "log.tsv", b"1\t2\t3\n")
    with pytest.raises(DataError) as err:
        read(path, "tsv", columns=ColumnMap(rating="stars"), names=("user", "item", "rating"))
    assert "column 'stars' (mapped to rating) not found in the column names" in str(err.value)
    assert "available: user, item, rating." in str(err.value)


def test_unknown_column_parquet_schema(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"uid": ["a"], "iid": ["b"], "ts": [1]}), path)
    with pytest.raises(DataError) as err:
        read(path, "parquet", columns=ColumnMap(user="uid", item="iid", timestamp="time"))
    assert str(err.value) == (
        f"column 'time' (mapped to timestamp) not found in the schema of {path}; available: uid, iid, ts. "
        "Set the column mapping (e.g. --user-col, --item-col)."
    )


def test_unknown_column_jsonl_names_the_column(tmp_path):
    path = write(tmp_path, "log.jsonl", b'{"uid": "a", "iid": "b"}\n{"uid": "c", "iid": "d"}\n')
    with pytest.raises(DataError) as err:
        read(path, "jsonl", columns=ColumnMap(user="uid", item="movie"))
    assert f"column 'movie' (mapped to item) not found in any JSON object of {path}" in str(err.value)


def test_unknown_column_jsonl_lists_available_keys(tmp_path):
    path = write(tmp_path, "log.jsonl", b'{"uid": "a", "iid": "b"}\n{"uid": "c", "iid": "d"}\n')
    with pytest.raises(DataError) as err:
        read(path, "jsonl", columns=ColumnMap(user="uid", item="movie"))
    assert "uid" in str(err.value).split("not found")[1]
    assert "iid" in str(err.value).split("not found")[1]


def test_damaged_parquet(tmp_path):
    path = write(tmp_path, "log.parquet", b"this is not parquet")
    with pytest.raises(DataError, match=re.escape(f"cannot read Parquet file {path}: ")):
        read(path, "parquet", columns=ColumnMap())


def test_header_true_with_names_skips_header(tmp_path):
    path = write(tmp_path, "log.csv", b"a,b,c,d\nu1,i1,4,100\n")
    frame, report = read(path, header=True, names=("user", "item", "rating", "timestamp"))
    assert report.bad == 0
    assert rows(frame) == [("u1", "i1", 4.0, 100.0, 2)]
