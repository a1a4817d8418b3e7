"""Popularity and BPR on Beauty with our protocol, beside RecBole 1.2.1 on the same data, same machine.

    .venv/bin/python benchmarks/beauty_baselines.py [--recbole]

`--recbole` first runs benchmarks/recbole/run.sh (its own venv; RecBole is not a project dependency)
so both sides are measured in one invocation; without it the last RecBole results on disk are used.
Writes benchmarks/results/beauty_baselines.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from foundrec.config import RunConfig  # noqa: E402
from foundrec.experiment import prepare, train_run  # noqa: E402
from machine import machine_info  # noqa: E402

HERE = Path(__file__).parent
KEYS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@10")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recbole", action="store_true", help="run RecBole first (minutes)")
    args = parser.parse_args()
    if args.recbole:
        subprocess.run(["bash", str(HERE / "recbole" / "run.sh")], check=True)
    base = RunConfig.model_validate({"data": {"dataset": "beauty"}})
    prepared = prepare(base)
    rows = {}
    for name in ("pop", "bpr"):
        cfg = base.model_copy(update={"model": name})
        rows[f"foundrec {name}"] = train_run(cfg, prepared=prepared)
    for name in ("pop", "bpr"):
        path = HERE / "recbole" / "results" / f"recbole_{name}.json"
        if path.is_file():
            rows[f"RecBole {name}"] = json.loads(path.read_text())
    result = {"machine": machine_info(), "runs": rows}
    (HERE / "results" / "beauty_baselines.json").write_text(json.dumps(result, indent=2))
    print(
        "| run | valid ndcg@10 | " + " | ".join(f"test {k}" for k in KEYS) + " | epochs | train s | eval s |"
    )
    print("|---" * (len(KEYS) + 5) + "|")
    for name, m in rows.items():
        test = " | ".join(f"{m['test'].get(k, float('nan')):.4f}" for k in KEYS)
        print(
            f"| {name} | {m['valid']['ndcg@10']:.4f} | {test} | {m.get('epochs', '')} | "
            f"{m.get('train_seconds', 0):.1f} | {m.get('eval_seconds', 0):.2f} |"
        )


if __name__ == "__main__":
    main()
