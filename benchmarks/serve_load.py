"""Load test of POST /v1/recommend: a uvicorn server in one process, this script's client in another.

    python benchmarks/serve_load.py --bundle /tmp/beauty-bundle [--run /tmp/runs/beauty-s1]

The client is plain asyncio streams with keep-alive HTTP/1.1 (no client library), so as little of the
machine as possible goes to generating load: on a 2-core machine client and server share the cores,
and the client's share is part of what the numbers show. Each level runs for --seconds or --requests,
whichever ends first, after a short warm-up. Users are drawn at random from the bundle's training
users, so every request encodes a real history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

HOST = "127.0.0.1"


async def client(
    port: int, users: list[str], k: int, stop_at: float, budget: list[int], out: list[float]
) -> int:
    """One connection sending requests back to back; appends latencies (s); returns non-200 count."""
    reader, writer = await asyncio.open_connection(HOST, port)
    errors = 0
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        body = json.dumps({"user_id": random.choice(users), "k": k}).encode()
        head = (
            f"POST /v1/recommend HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        writer.write(head + body)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        out.append(time.perf_counter() - start)
        errors += not status_line.startswith(b"HTTP/1.1 200")
    writer.close()
    return errors


async def level(port: int, users: list[str], concurrency: int, seconds: float, requests: int, k: int) -> dict:
    warm: list[float] = []
    await asyncio.gather(
        *(client(port, users, k, time.perf_counter() + 1, [50], warm) for _ in range(concurrency))
    )
    latencies: list[float] = []
    budget = [requests]
    start = time.perf_counter()
    errors = await asyncio.gather(
        *(client(port, users, k, start + seconds, budget, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": int(sum(errors)),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def start_server(
    bundle: Path, store: str, port: int, threads: int, window_ms: float, workers: int
) -> subprocess.Popen:
    env = {
        **os.environ,
        "FOUNDREC_BUNDLE": str(bundle),
        "FOUNDREC_STORE": store,
        "FOUNDREC_TOKEN": os.environ.get("FOUNDREC_TOKEN", "benchmark"),
        "OMP_NUM_THREADS": str(threads),  # torch threads of the encoder in the server
        "FOUNDREC_BATCH_WINDOW_MS": str(window_ms),
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "foundrec.serve.app:app_from_env"]
    cmd += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, required=True, help="bundle folder (written when --run is given)"
    )
    parser.add_argument("--run", type=Path, help="run folder to export to --bundle first")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--window-ms", type=float, default=1.0, help="micro-batch window in the server")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    args = parser.parse_args()
    if args.run:
        from foundrec.serve.bundle import export_bundle

        export_bundle(args.run, args.bundle)
    users = (args.bundle / "vocab" / "users.txt").read_text().split("\n")[:-1]
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:{tmp}/events.db"
        server = start_server(args.bundle, store, args.port, args.threads, args.window_ms, args.workers)
        try:
            rows = []
            for c in args.concurrency:
                rows.append(asyncio.run(level(args.port, users, c, args.seconds, args.requests, args.k)))
                print(json.dumps(rows[-1]), flush=True)
            metrics = httpx.get(f"http://{HOST}:{args.port}/metrics").text
        finally:
            server.terminate()
            server.wait(30)
    result = {
        "endpoint": "POST /v1/recommend",
        "bundle": {"model": manifest["model"], "version": manifest["version"], "users": len(users)},
        "setup": {
            "server": f"{args.workers} uvicorn worker(s) (uvloop, httptools), SQLite, exact FAISS",
            "client": "asyncio streams, keep-alive, one connection per concurrent user, same machine",
            "k": args.k,
            "server_torch_threads": args.threads,
            "batch_window_ms": args.window_ms,
            "seconds_per_level": args.seconds,
            "max_requests_per_level": args.requests,
        },
        "machine": {**machine_info(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "levels": rows,
        "server_requests_total": [
            line for line in metrics.splitlines() if line.startswith("foundrec_requests_total")
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
