"""Fixtures: a tiny trained SASRec exported as a bundle, stores, a running redis-server.

Training code is used here only to make the bundle; the serving code under test never imports it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from foundrec.config import DataConfig, RunConfig, TrainConfig
from foundrec.serve.bundle import export_bundle


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foundrec.experiment import train_run

    out = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        model="sasrec",
        params={"size": "tiny", "epochs": 2, "device": "cpu", "batch_size": 128},
        data=DataConfig(dataset="synthetic", synthetic={"users": 300, "items": 200, "mean_length": 10}),
        train=TrainConfig(seed=0, threads=1),
    )
    train_run(cfg, out)
    return out


@pytest.fixture(scope="session")
def bundle_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(run_dir, tmp_path_factory.mktemp("bundles") / "b1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server with an fsync-always append-only file, on a free port in a temp dir."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    folder, port = tmp_path_factory.mktemp("redis"), free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store kind, empty: a new SQLite file, or a new Redis database number per test."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'events.db'}"
    base = request.getfixturevalue("redis_url")
    import redis

    client = redis.Redis.from_url(base)
    client.flushdb()
    client.close()
    return base


class Server:
    """`uvicorn` serving a bundle in a child process, as `foundrec serve` runs it."""

    def __init__(self, bundle: Path, store: str, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FOUNDREC_BUNDLE": str(bundle),
            "FOUNDREC_STORE": store,
            "FOUNDREC_TOKEN": token,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "foundrec.serve.app:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the server exited during startup"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the server did not become ready in 60 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def server(bundle_dir: Path, store_url: str) -> Iterator[Server]:
    srv = Server(bundle_dir, store_url, "test-token")
    try:
        yield srv.start()
    finally:
        srv.kill()
