"""Every event acknowledged with 202 survives a SIGKILL of the server, for SQLite and Redis alike."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httpx

from foundrec.serve.bundle import load_bundle
from foundrec.serve.store import open_store

AUTH = {"Authorization": "Bearer test-token"}


def test_acknowledged_events_survive_sigkill(server: Any) -> None:
    items = load_bundle(server.env["FOUNDREC_BUNDLE"]).items.ids
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def stream(writer: int) -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                user, item = f"w{writer}-u{n % 7}", items[n % len(items)]
                try:
                    response = client.post(
                        "/v1/events", json={"user_id": user, "item_id": item, "type": "click"}
                    )
                except httpx.TransportError:
                    return  # the server is gone: this event was never acknowledged
                if response.status_code == 202:
                    acknowledged.append((user, item))

    writers = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for w in writers:
        w.start()
    time.sleep(1.0)
    server.kill()  # mid-stream
    stop.set()
    for w in writers:
        w.join()
    assert len(acknowledged) > 20, "too few events were streamed before the kill"

    server.start()  # recovers from the store as the crash left it

    async def stored_events() -> dict[str, Counter]:
        store = open_store(server.env["FOUNDREC_STORE"])
        users = {u for u, _ in acknowledged}
        found = {u: Counter(e.item_id for e in await store.recent(u, 1_000_000)) for u in users}
        await store.close()
        return found

    for user, stored in asyncio.run(stored_events()).items():
        sent = Counter(i for u, i in acknowledged if u == user)
        assert not sent - stored, f"{user}: acknowledged but lost: {sent - stored}"
