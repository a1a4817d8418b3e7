"""The event store contract, run against SQLite and a real Redis alike."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import redis

from foundrec.errors import FoundrecError
from foundrec.serve.store import Event, open_store


def test_append_recent_delete(store_url: str) -> None:
    async def scenario() -> None:
        store = open_store(store_url)
        await store.ping()
        await store.append([Event("a", f"i{n}", "view", None, float(n)) for n in range(5)])
        await store.append([Event("b", "x", "rating", 4.5, 9.0)])
        recent = await store.recent("a", 3)
        assert [e.item_id for e in recent] == ["i2", "i3", "i4"]  # the last three, oldest first
        assert await store.recent("b", 10) == [Event("b", "x", "rating", 4.5, 9.0)]
        assert await store.recent("nobody", 10) == []
        assert await store.delete_user("a") == 5
        assert await store.recent("a", 10) == []
        assert len(await store.recent("b", 10)) == 1  # other users untouched
        await store.close()

    asyncio.run(scenario())


def test_events_survive_reopening(store_url: str) -> None:
    async def write() -> None:
        store = open_store(store_url)
        await store.append([Event("u", "i", "purchase", 1.0, 1.0)])
        await store.close()

    async def read() -> list[Event]:
        store = open_store(store_url)
        try:
            return await store.recent("u", 10)
        finally:
            await store.close()

    asyncio.run(write())
    assert asyncio.run(read()) == [Event("u", "i", "purchase", 1.0, 1.0)]


def test_sqlite_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.db"
    asyncio.run(open_store(f"sqlite:{path}").close())
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_redis_without_fsync_always_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.config_set("appendfsync", "everysec")
    try:
        with pytest.raises(FoundrecError, match="appendfsync=everysec"):
            open_store(redis_url)
    finally:
        client.config_set("appendfsync", "always")
        client.close()


def test_unknown_store_url_is_a_clear_error() -> None:
    with pytest.raises(FoundrecError, match="sqlite:PATH or redis://"):
        open_store("postgres://x")
