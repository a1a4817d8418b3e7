"""Cleaning, indexing, CSR sequence helpers, splits and the synthetic generator."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest

from foundrec.data.prepare import Interactions, Vocab, build_interactions, clean, kcore_filter
from foundrec.data.sequences import Sequences
from foundrec.data.split import leave_one_out, make_split, temporal
from foundrec.data.synthetic import SyntheticConfig, generate
from foundrec.errors import DataError


def frame(rows: list[tuple], timestamp: bool = True) -> pl.DataFrame:
    """rows: (user, item, timestamp) or (user, item); `line` is the row's 1-based position."""
    data = {"user": [r[0] for r in rows], "item": [r[1] for r in rows]}
    if timestamp:
        data["timestamp"] = [float(r[2]) for r in rows]
    data["line"] = list(range(1, len(rows) + 1))
    return pl.DataFrame(data)


def triples(df: pl.DataFrame) -> list[tuple]:
    return df.select("user", "item", "timestamp", "line").rows()


# --- deduplication ----------------------------------------------------------------------------------------

DUPS = [
    ("b", "x", 3),  # 1
    ("b", "y", 1),  # 2
    ("a", "x", 5),  # 3
    ("b", "x", 2),  # 4  earlier repeat of (b, x)
    ("a", "x", 5),  # 5  exact duplicate of line 3
    ("b", "x", 3),  # 6  exact duplicate of line 1
]


def test_dedup_exact_drops_only_identical_events():
    out = clean(frame(DUPS), dedup="exact")
    assert triples(out) == [("b", "x", 3.0, 1), ("b", "y", 1.0, 2), ("a", "x", 5.0, 3), ("b", "x", 2.0, 4)]


def test_dedup_none_keeps_everything():
    assert triples(clean(frame(DUPS), dedup="none")) == triples(frame(DUPS))


@pytest.mark.parametrize(("mode", "kept"), [("first", [2, 3, 4]), ("last", [2, 5, 6])])
def test_dedup_first_last_keep_one_event_per_user_item_by_time(mode, kept):
    # (b,x) happens at t=3 (line 1), t=2 (line 4), t=3 (line 6): first in time is line 4, last is line 6
    # (the t=3 tie is broken by file order); (a,x) twice at t=5: lines 3 and 5
    out = clean(frame(DUPS), dedup=mode)
    assert sorted(out["line"].to_list()) == kept
    assert sorted(out.select("user", "item").rows()) == [("a", "x"), ("b", "x"), ("b", "y")]


def test_dedup_first_without_timestamp_uses_file_order():
    rows = [("u", "x"), ("u", "y"), ("u", "x"), ("v", "x"), ("v", "x")]
    first = clean(frame(rows, timestamp=False), dedup="first")
    last = clean(frame(rows, timestamp=False), dedup="last")
    assert sorted(first.select("user", "item", "line").rows()) == [
        ("u", "x", 1),
        ("u", "y", 2),
        ("v", "x", 4),
    ]
    assert sorted(last.select("user", "item", "line").rows()) == [("u", "x", 3), ("u", "y", 2), ("v", "x", 5)]


def test_dedup_exact_without_timestamp_is_per_user_item():
    rows = [("u", "x"), ("u", "y"), ("u", "x")]
    out = clean(frame(rows, timestamp=False), dedup="exact")
    assert out.select("user", "item", "line").rows() == [("u", "x", 1), ("u", "y", 2)]


@pytest.mark.parametrize("mode", ["first", "last"])
def test_dedup_first_last_keep_row_order(mode):
    out = clean(frame(DUPS), dedup=mode)
    assert out["line"].to_list() == sorted(out["line"].to_list())


def test_min_rating_filter_and_missing_column():
    df = frame([("u", "a", 1), ("u", "b", 2)]).with_columns(pl.Series("rating", [2.0, 4.0]))
    assert clean(df, min_rating=3.0)["item"].to_list() == ["b"]
    with pytest.raises(DataError, match="data.min_rating is set but the data has no rating column"):
        clean(frame([("u", "a", 1)]), min_rating=3.0)


def test_clean_everything_removed_is_an_error():
    with pytest.raises(DataError) as err:
        clean(frame([("u", "a", 1)]), kcore=2)
    assert str(err.value) == "no interactions left after cleaning; relax data.kcore or data.min_rating"


# --- k-core -----------------------------------------------------------------------------------------------


def _kcore_reference(rows: list[tuple], k: int) -> set[tuple]:
    kept = set(rows)
    while True:
        users = Counter(u for u, _, _ in kept)
        items = Counter(i for _, i, _ in kept)
        nxt = {r for r in kept if users[r[0]] >= k and items[r[1]] >= k}
        if nxt == kept:
            return kept
        kept = nxt


def test_kcore_cascade_user_removal_drops_item():
    # item "c" has 2 interactions, but one comes from user "z" who has only 1: dropping z leaves c with 1,
    # dropping c leaves user "y" with 1, and y must go too; "b" keeps 2 (w, x)
    rows = [
        ("w", "a", 1),
        ("w", "b", 2),
        ("x", "a", 1),
        ("x", "b", 2),
        ("y", "b", 1),
        ("y", "c", 2),
        ("z", "c", 1),
    ]
    out = kcore_filter(frame(rows), 2)
    assert out.select("user", "item").rows() == [("w", "a"), ("w", "b"), ("x", "a"), ("x", "b")]
    assert out["line"].to_list() == [1, 2, 3, 4]
    assert {(u, i, t) for u, i, t, _ in triples(out)} == {
        (u, i, float(t)) for u, i, t in _kcore_reference(rows, 2)
    }


def test_kcore_iterates_until_stable():
    # a chain: v -> d -> z -> c -> y, one link per pass; a single pass would leave z, c and y
    rows = [
        ("w", "a", 0),
        ("w", "b", 0),
        ("x", "a", 0),
        ("x", "b", 0),
        ("y", "b", 0),
        ("y", "c", 0),
        ("z", "c", 0),
        ("z", "d", 0),
        ("v", "d", 0),
    ]
    df = frame(rows)
    one_pass = df.filter(pl.len().over("user") >= 2).filter(pl.len().over("item") >= 2)
    assert set(one_pass["user"].to_list()) == {"w", "x", "y", "z"}
    out = kcore_filter(df, 2)
    assert out.select("user", "item").rows() == [("w", "a"), ("w", "b"), ("x", "a"), ("x", "b")]
    assert clean(df, dedup="none", kcore=2).select("user", "item").rows() == out.select("user", "item").rows()


def test_kcore_matches_reference_on_random_data():
    rng = np.random.default_rng(7)
    rows = sorted(
        {
            (f"u{u}", f"i{i}", 0)
            for u, i in zip(rng.integers(0, 60, 900), rng.zipf(1.6, 900) % 80, strict=True)
        }
    )
    for k in (2, 3, 5, 8):
        out = kcore_filter(frame(rows), k)
        got = {(u, i, int(t)) for u, i, t, _ in triples(out)}
        assert got == _kcore_reference(rows, k)
        assert triples(out) == sorted(triples(out), key=lambda r: r[3])  # input order kept


# --- build_interactions: vocab order and stable time order ------------------------------------------------


def test_equal_timestamps_keep_file_order():
    rows = [("u", "c", 5), ("v", "a", 1), ("u", "a", 5), ("u", "b", 1), ("u", "d", 5)]
    data = build_interactions(frame(rows))
    assert data.users.ids == ["u", "v"]
    assert data.items.ids == ["c", "a", "b", "d"]
    u = [data.items.ids[i] for i in data.sequences.row(0)]
    assert u == ["b", "c", "a", "d"]  # t=1 first, then the three t=5 events in file order
    assert data.sequences.timestamps.tolist() == [1.0, 5.0, 5.0, 5.0, 1.0]


def test_many_equal_timestamps_are_stable():
    n = 3000
    rng = np.random.default_rng(1)
    items = [f"i{x}" for x in rng.permutation(n)]
    data = build_interactions(frame([("u", it, 7) for it in items]))
    assert [data.items.ids[i] for i in data.sequences.row(0)] == items


def test_no_timestamp_uses_position_order():
    rows = [("u", "z"), ("v", "y"), ("u", "x"), ("u", "z")]
    data = build_interactions(frame(rows, timestamp=False))
    assert data.sequences.timestamps is None
    assert [data.items.ids[i] for i in data.sequences.row(0)] == ["z", "x", "z"]
    assert [data.items.ids[i] for i in data.sequences.row(1)] == ["y"]


def test_build_interactions_ratings_align_with_items():
    df = frame([("u", "a", 3), ("u", "b", 1), ("v", "a", 2)])
    df = df.with_columns(pl.Series("rating", [1.0, 2.0, 3.0]))
    data = build_interactions(df)
    assert data.sequences.items.tolist() == [1, 0, 0]
    assert data.ratings.tolist() == [2.0, 1.0, 3.0]
    stats = data.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 2, 3)
    assert stats["density"] == pytest.approx(0.75)
    assert (stats["length_min"], stats["length_max"]) == (1, 2)


# --- Vocab ------------------------------------------------------------------------------------------------


def test_vocab_save_load_round_trip(tmp_path):
    ids = ["10", "a b", "café", "x,y", " lead", "\u00e9t\u00e9", "日本"]
    vocab = Vocab(ids)
    vocab.save(tmp_path / "items.txt")
    loaded = Vocab.load(tmp_path / "items.txt")
    assert loaded.ids == ids and len(loaded) == len(ids)
    assert [loaded.index(x) for x in ids] == list(range(len(ids)))
    assert loaded.index("missing") is None
    assert (tmp_path / "items.txt").read_text().splitlines()[2] == "café"


def test_vocab_round_trip_with_unicode_line_separators(tmp_path):
    ids = ["a", "x\x85y", "p\u2028q", "z"]
    Vocab(ids).save(tmp_path / "v.txt")
    assert Vocab.load(tmp_path / "v.txt").ids == ids


# --- Sequences CSR helpers against plain Python -----------------------------------------------------------


def random_sequences(rng: np.random.Generator, n_rows: int = 40) -> tuple[Sequences, list[list[int]]]:
    lengths = rng.integers(0, 8, n_rows)
    lengths[:3] = 0  # leading empty rows exercise _ranges
    lists = [rng.integers(0, 50, n).tolist() for n in lengths]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([x for row in lists for x in row], dtype=np.int64)
    seqs = Sequences(
        offsets,
        items,
        rng.permutation(n_rows).astype(np.int64),
        timestamps=items.astype(np.float64) * 10 + 0.5,
    )
    return seqs, lists


def as_lists(seqs: Sequences) -> list[list[int]]:
    return [seqs.row(r).tolist() for r in range(len(seqs))]


def check_consistent(seqs: Sequences) -> None:
    assert seqs.offsets.dtype == np.int64 and seqs.offsets[0] == 0
    assert len(seqs.offsets) == len(seqs.rows) + 1
    assert seqs.nnz == len(seqs.items)
    assert np.array_equal(seqs.timestamps, seqs.items * 10 + 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_sequences_helpers_match_python(seed):
    rng = np.random.default_rng(seed)
    seqs, lists = random_sequences(rng)
    assert as_lists(seqs) == lists
    assert seqs.lengths.tolist() == [len(r) for r in lists]
    assert seqs.row_ids().tolist() == [r for r, row in enumerate(lists) for _ in row]

    mask = rng.random(len(lists)) < 0.5
    sel = seqs.select(mask)
    check_consistent(sel)
    assert as_lists(sel) == [row for row, m in zip(lists, mask, strict=True) if m]
    assert sel.rows.tolist() == seqs.rows[mask].tolist()

    index = rng.integers(0, len(lists), 25)  # repeats and any order
    sel = seqs.select(index)
    check_consistent(sel)
    assert as_lists(sel) == [lists[i] for i in index]
    assert sel.rows.tolist() == [int(seqs.rows[i]) for i in index]

    keep = np.array([rng.integers(0, len(r) + 1) for r in lists], dtype=np.int64)
    cut = seqs.truncate(keep)
    check_consistent(cut)
    assert as_lists(cut) == [row[:k] for row, k in zip(lists, keep, strict=True)]
    assert np.array_equal(cut.rows, seqs.rows)

    item_mask = rng.random(seqs.nnz) < 0.6
    filtered = seqs.filter_items(item_mask)
    check_consistent(filtered)
    flat_mask = iter(item_mask.tolist())
    assert as_lists(filtered) == [[x for x in row if next(flat_mask)] for row in lists]
    assert len(filtered) == len(lists)


def test_sequences_empty_selections():
    seqs, _ = random_sequences(np.random.default_rng(0), 5)
    empty = seqs.select(np.zeros(5, dtype=bool))
    assert len(empty) == 0 and empty.nnz == 0 and empty.offsets.tolist() == [0]
    none_kept = seqs.truncate(np.zeros(5, dtype=np.int64))
    assert none_kept.lengths.tolist() == [0] * 5 and none_kept.nnz == 0
    all_empty = seqs.select(np.array([0, 1, 2]))  # the three leading empty rows
    assert all_empty.lengths.tolist() == [0, 0, 0]


# --- splits -----------------------------------------------------------------------------------------------


def interactions(lists: list[list[int]], times: list[list[float]] | None = None, n_items: int | None = None):
    lengths = [len(r) for r in lists]
    seqs = Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([x for r in lists for x in r], dtype=np.int64),
        rows=np.arange(len(lists), dtype=np.int64),
        timestamps=None if times is None else np.array([t for r in times for t in r], dtype=np.float64),
    )
    n_items = n_items or int(seqs.items.max()) + 1
    return Interactions(
        Vocab([f"u{i}" for i in range(len(lists))]), Vocab([f"i{i}" for i in range(n_items)]), seqs
    )


def test_leave_one_out():
    lists = [[1, 2, 3, 4, 5], [6], [7, 8], [9, 1, 2], [3, 3, 3, 4]]
    split = leave_one_out(interactions(lists))
    assert as_lists(split.train) == [[1, 2, 3], [6], [7, 8], [9], [3, 3]]
    assert split.train.rows.tolist() == [0, 1, 2, 3, 4]
    assert split.valid.users.tolist() == [0, 3, 4]
    assert as_lists(split.valid.history) == [[1, 2, 3], [9], [3, 3]]
    assert as_lists(split.valid.targets) == [[4], [1], [3]]
    assert split.test.users.tolist() == [0, 3, 4]
    assert as_lists(split.test.history) == [[1, 2, 3, 4], [9, 1], [3, 3, 3]]
    assert as_lists(split.test.targets) == [[5], [2], [4]]
    assert split.test.history.lengths.tolist() == [4, 2, 3]
    assert split.valid.history.lengths.tolist() == [3, 1, 2]
    assert (split.n_users, split.n_items) == (5, 10)
    assert split.item_counts().tolist() == [0, 1, 1, 3, 0, 0, 1, 1, 1, 1]
    assert make_split(interactions(lists), "loo").test.users.tolist() == [0, 3, 4]


@pytest.mark.parametrize("seed", range(3))
def test_leave_one_out_matches_python(seed):
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, 30, rng.integers(1, 9)).tolist() for _ in range(50)]
    split = leave_one_out(interactions(lists, n_items=30))
    ev = [u for u, r in enumerate(lists) if len(r) >= 3]
    assert as_lists(split.train) == [r[:-2] if len(r) >= 3 else r for r in lists]
    assert split.test.users.tolist() == ev == split.valid.users.tolist()
    assert as_lists(split.test.targets) == [[lists[u][-1]] for u in ev]
    assert as_lists(split.valid.targets) == [[lists[u][-2]] for u in ev]
    assert as_lists(split.test.history) == [lists[u][:-1] for u in ev]
    assert as_lists(split.valid.history) == [lists[u][:-2] for u in ev]
    assert split.train.nnz + 2 * len(ev) == sum(map(len, lists))


def test_temporal_small_exact():
    # 10 events; sorted times 0 1 2 3 5 6 6.5 7 8 9 -> t1 = quantile 0.6 = 6.2, t2 = quantile 0.8 = 7.2
    lists = [[0, 1, 2, 3, 3], [4, 5], [6, 7], [9]]
    times = [[0, 5, 6, 8, 9], [1, 7], [2, 3], [6.5]]
    data = interactions(lists, times)
    assert np.quantile(data.sequences.timestamps, [0.6, 0.8]) == pytest.approx([6.2, 7.2])
    split = temporal(data, valid_fraction=0.2, test_fraction=0.2)
    assert as_lists(split.train) == [[0, 1, 2], [4], [6, 7], []]
    # valid period [6.2, 7.2): user1 item 5 at t=7; user3 (t=6.5) has no earlier event and is dropped
    assert split.valid.users.tolist() == [1]
    assert as_lists(split.valid.history) == [[4]]
    assert as_lists(split.valid.targets) == [[5]]
    # test period t >= 7.2: user0 has item 3 at t=8 and t=9 -> one target; history is everything before t2
    assert split.test.users.tolist() == [0]
    assert as_lists(split.test.history) == [[0, 1, 2]]
    assert as_lists(split.test.targets) == [[3]]
    assert split.test.targets.timestamps.tolist() == [8.0]
    assert split.protocol.startswith("temporal: global time split 60%/20%/20%")


def test_temporal_needs_timestamps():
    with pytest.raises(DataError, match="the temporal split needs timestamps"):
        temporal(interactions([[1, 2, 3]]))
    with pytest.raises(DataError, match="unknown split 'random'; use loo or temporal"):
        make_split(interactions([[1, 2, 3]]), "random")


@pytest.mark.parametrize("seed", range(3))
def test_temporal_properties_on_random_data(seed):
    rng = np.random.default_rng(seed)
    lists, times = [], []
    for _ in range(80):
        n = int(rng.integers(1, 12))
        lists.append(rng.integers(0, 15, n).tolist())  # few items: many repeats to deduplicate
        times.append(np.sort(rng.integers(0, 1000, n)).astype(float).tolist())
    data = interactions(lists, times, n_items=15)
    split = temporal(data, 0.15, 0.15)
    t1, t2 = np.quantile(data.sequences.timestamps, [0.7, 0.85])
    assert split.train.timestamps.max() < t1
    for ev, lo, hi in ((split.valid, t1, t2), (split.test, t2, np.inf)):
        assert np.all(ev.history.lengths > 0) and np.all(ev.targets.lengths > 0)
        expected_users = [
            u for u in range(80) if any(t < lo for t in times[u]) and any(lo <= t < hi for t in times[u])
        ]
        assert ev.users.tolist() == expected_users
        assert ev.targets.rows.tolist() == expected_users
        for r, u in enumerate(expected_users):
            hist_t = ev.history.timestamps[ev.history.offsets[r] : ev.history.offsets[r + 1]]
            targ_t = ev.targets.timestamps[ev.targets.offsets[r] : ev.targets.offsets[r + 1]]
            assert hist_t.max() < lo <= targ_t.min() and targ_t.max() < hi  # no target before history
            history = [i for i, t in zip(lists[u], times[u], strict=True) if t < lo]
            assert ev.history.row(r).tolist() == history
            seen: list[int] = []
            for i, t in zip(lists[u], times[u], strict=True):
                if lo <= t < hi and i not in seen:
                    seen.append(i)
            assert ev.targets.row(r).tolist() == seen  # deduplicated, first occurrence, time order


# --- synthetic generator ----------------------------------------------------------------------------------


def test_synthetic_is_seeded_and_sized():
    cfg = SyntheticConfig(users=300, items=200, mean_length=12, min_length=4, max_length=30, seed=5)
    a, b = generate(cfg), generate(cfg)
    assert a.equals(b)
    assert not a.equals(generate(cfg.model_copy(update={"seed": 6})))
    assert a.columns == ["user", "item", "timestamp", "line"]
    assert a["user"].n_unique() == 300
    lengths = a.group_by("user").len()["len"]
    assert lengths.min() >= 4 and lengths.max() <= 30
    assert a["item"].cast(pl.Int64).max() < 200
    assert a["line"].to_list() == list(range(a.height))
    ordered = a.with_columns(pl.col("timestamp").diff().over("user").alias("dt"))
    assert ordered["dt"].drop_nulls().min() > 0  # strictly increasing per user in row order


@pytest.mark.parametrize(("follow", "share"), [(0.0, 0.65), (0.3, 0.5)])
def test_synthetic_power_law_popularity(follow, share):
    cfg = SyntheticConfig(users=1000, items=500, zipf=1.1, follow=follow, seed=3)
    counts = np.bincount(generate(cfg)["item"].cast(pl.Int64).to_numpy(), minlength=cfg.items)
    top = np.sort(counts)[::-1]
    assert top[: cfg.items // 10].sum() / counts.sum() > share  # top 10% of items: a large share
    assert top[0] > 20 * np.median(counts)


def test_synthetic_popularity_follows_zipf_exponent():
    cfg = SyntheticConfig(users=1000, items=500, zipf=1.1, follow=0.0, seed=4)
    counts = np.sort(np.bincount(generate(cfg)["item"].cast(pl.Int64).to_numpy(), minlength=cfg.items))[::-1]
    ranks = np.arange(1, 31)
    slope = np.polyfit(np.log(ranks), np.log(counts[:30]), 1)[0]
    assert slope == pytest.approx(-1.1, abs=0.15)


def _successor_hit_rates(df: pl.DataFrame, k: int) -> tuple[float, float]:
    """Shares of consecutive pairs (a, b) whose b is a's top successor, or among its k top successors."""
    users = df["user"].to_numpy()
    items = df["item"].cast(pl.Int64).to_numpy()
    same = users[1:] == users[:-1]
    pairs = pl.DataFrame({"a": items[:-1][same], "b": items[1:][same]}).group_by("a", "b").len()
    ranked = pairs.sort(["a", "len"], descending=[False, True])
    top1 = ranked.group_by("a").head(1)["len"].sum()
    topk = ranked.group_by("a").head(k)["len"].sum()
    return top1 / same.sum(), topk / same.sum()


def test_synthetic_sequential_structure():
    cfg = SyntheticConfig(users=1000, items=500, zipf=0.6, successors=3, follow=0.6, seed=1)
    df = generate(cfg)
    top1, top3 = _successor_hit_rates(df, 3)
    shuffled = df.with_columns(pl.Series("item", np.random.default_rng(0).permutation(df["item"].to_numpy())))
    chance1, chance3 = _successor_hit_rates(shuffled, 3)
    no_follow1, no_follow3 = _successor_hit_rates(generate(cfg.model_copy(update={"follow": 0.0})), 3)
    assert top3 > 0.5 and top1 > 0.2
    assert top3 > 3 * chance3 and top1 > 3 * chance1
    assert top3 > 3 * no_follow3 and top1 > 3 * no_follow1


def test_new_items_are_held_out_of_training_only():
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 40, rng.integers(3, 12)).tolist() for _ in range(80)]
    plain = make_split(interactions(lists), "loo")
    split = make_split(interactions(lists), "loo", new_items=0.25)
    counts = split.item_counts()
    held = np.flatnonzero((counts == 0) & (plain.item_counts() > 0))
    assert len(held) > 0 and set(np.flatnonzero(counts == 0)) >= set(held)
    assert (split.item_counts() <= plain.item_counts()).all()
    kept = ~np.isin(plain.train.items, np.flatnonzero(counts == 0))
    assert split.train.items.tolist() == plain.train.items[kept].tolist()  # order kept, nothing else lost
    for part in ("valid", "test"):  # evaluation untouched: held items stay targets and history items
        assert as_lists(getattr(split, part).targets) == as_lists(getattr(plain, part).targets)
        assert as_lists(getattr(split, part).history) == as_lists(getattr(plain, part).history)
    again = make_split(interactions(lists), "loo", new_items=0.25)
    assert again.train.items.tolist() == split.train.items.tolist()  # the same items every time
    assert "held out of training" in split.protocol
    with pytest.raises(DataError, match="new_items"):
        make_split(interactions(lists), "loo", new_items=1.5)
