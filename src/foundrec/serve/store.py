"""The online event store: append events durably, read a user's recent events, forget a user.

Two implementations behind one async interface: SQLite (embedded default, one file) and Redis (shared
by several API replicas). `append` returns only once the events survive a crash of the API process and
of the machine, which is what lets the API answer 202:
- SQLite runs in WAL mode with synchronous=FULL. With WAL, NORMAL already survives a killed process
  (the WAL is in the OS page cache) but may lose the last commits on power loss; FULL fsyncs the WAL
  at every commit, one fsync per request batch, so an acknowledged event survives both.
- Redis must run with appendonly yes and appendfsync always (checked when the store opens): Redis
  then fsyncs its append-only file before it answers a write.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import redis.asyncio

from foundrec.errors import FoundrecError


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    type: str  # view, click, purchase, rating
    value: float | None
    timestamp: float  # seconds since the epoch


class EventStore(ABC):
    @abstractmethod
    async def append(self, events: Sequence[Event]) -> None:
        """Store events atomically; durable when this returns."""

    @abstractmethod
    async def recent(self, user_id: str, limit: int) -> list[Event]:
        """The user's last `limit` events, oldest first."""

    @abstractmethod
    async def delete_user(self, user_id: str) -> int:
        """Forget every event of a user; returns how many there were."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be used."""

    @abstractmethod
    async def close(self) -> None: ...


def open_store(url: str) -> EventStore:
    """`sqlite:PATH` (the file is created on first start) or `redis://host:port/db`."""
    if url.startswith("sqlite:"):
        return SQLiteStore(Path(url.removeprefix("sqlite:").removeprefix("//")))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise FoundrecError(f"unknown store {url!r}: use sqlite:PATH or redis://HOST:PORT/DB")


class SQLiteStore(EventStore):
    """One connection behind a lock; writes run in a worker thread so their fsync never blocks the loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")  # another process may hold the write lock
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, user_id TEXT NOT NULL,"
                " item_id TEXT NOT NULL, type TEXT NOT NULL, value REAL, timestamp REAL NOT NULL)"
            )
            self.db.execute("CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)")
        except sqlite3.Error as exc:
            raise FoundrecError(f"cannot open the SQLite store {path}: {exc}") from None

    def _append(self, events: Sequence[Event]) -> None:
        rows = [(e.user_id, e.item_id, e.type, e.value, e.timestamp) for e in events]
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT INTO events (user_id, item_id, type, value, timestamp) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    async def append(self, events: Sequence[Event]) -> None:
        await asyncio.to_thread(self._append, events)

    async def recent(self, user_id: str, limit: int) -> list[Event]:
        # An indexed read of one user takes tens of microseconds: cheaper inline than a thread hop.
        with self.lock:
            rows = self.db.execute(
                "SELECT user_id, item_id, type, value, timestamp FROM events WHERE user_id = ?"
                " ORDER BY seq DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        return [Event(*row) for row in reversed(rows)]

    def _delete(self, user_id: str) -> int:
        with self.lock:
            return self.db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount

    async def delete_user(self, user_id: str) -> int:
        return await asyncio.to_thread(self._delete, user_id)

    async def ping(self) -> None:
        with self.lock:
            self.db.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        with self.lock:
            self.db.close()


class RedisStore(EventStore):
    """One list per user (`foundrec:events:USER`) of JSON events; a batch is one MULTI/EXEC."""

    PREFIX = "foundrec:events:"

    def __init__(self, url: str) -> None:
        self.url = url
        _check_durable(url)
        self.client = redis.asyncio.Redis.from_url(url)

    async def append(self, events: Sequence[Event]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            for e in events:
                pipe.rpush(self.PREFIX + e.user_id, json.dumps(asdict(e)))
            await pipe.execute()

    async def recent(self, user_id: str, limit: int) -> list[Event]:
        raw = await self.client.lrange(self.PREFIX + user_id, -limit, -1)
        return [Event(**json.loads(r)) for r in raw]

    async def delete_user(self, user_id: str) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.llen(self.PREFIX + user_id)
            pipe.delete(self.PREFIX + user_id)
            count, _ = await pipe.execute()
        return int(count)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


def _check_durable(url: str) -> None:
    """Refuse a Redis that would acknowledge writes it has not fsynced."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5) as client:
            aof = client.config_get("appendonly").get("appendonly")
            fsync = client.config_get("appendfsync").get("appendfsync")
    except redis.RedisError as exc:
        raise FoundrecError(f"cannot reach the Redis store {url}: {exc}") from None
    if aof != "yes" or fsync != "always":
        raise FoundrecError(
            f"Redis at {url} would lose acknowledged events on a crash (appendonly={aof},"
            f" appendfsync={fsync}); run it with --appendonly yes --appendfsync always"
        )
