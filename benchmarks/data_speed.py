"""Data-layer speed: `foundrec data stats beauty` wall time, and preparing 10M synthetic interactions.

    .venv/bin/python benchmarks/data_speed.py

Each measurement runs in a fresh process, so peak RSS (ru_maxrss of the child) is that step's alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

PREPARE_10M = """
import time
from foundrec.config import DataConfig
from foundrec.data.datasets import load_dataset
from foundrec.data.split import leave_one_out
start = time.perf_counter()
data = load_dataset(DataConfig(dataset="synthetic",
                               synthetic={"users": 500_000, "items": 50_000, "mean_length": 20}))
split = leave_one_out(data.interactions)
print(data.interactions.sequences.nnz, len(split.test), time.perf_counter() - start)
"""


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, child peak RSS in MB, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024, out


def main() -> None:
    foundrec = str(Path(sys.executable).parent / "foundrec")
    stats_s, stats_mb, _ = timed([foundrec, "data", "stats", "beauty", "--json"])
    prep_s, prep_mb, out = timed([sys.executable, "-c", PREPARE_10M])
    nnz, test_users, inner_s = out.split()
    print(
        json.dumps(
            {
                "data_stats_beauty_seconds": round(stats_s, 2),
                "prepare_10m": {
                    "interactions": int(nnz),
                    "test_users": int(test_users),
                    "process_seconds": round(prep_s, 1),
                    "prepare_seconds": round(float(inner_s), 1),
                    "peak_rss_mb": round(prep_mb),
                },
                "machine": machine_info(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
