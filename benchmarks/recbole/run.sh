#!/usr/bin/env bash
# Full peer benchmark: venv + data conversion + RecBole Pop and BPR on Amazon Beauty (run one at a time).
# Usage: bash benchmarks/recbole/run.sh [path/to/sequences.txt]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PY="$HERE/.venv/bin/python"
mkdir -p logs results

bash "$HERE/setup.sh"
"$PY" "$HERE/convert_beauty.py" "$@"

for m in Pop BPR; do
  lower="$(echo "$m" | tr '[:upper:]' '[:lower:]')"
  echo "[run] $m -> results/recbole_${lower}.json (log: logs/recbole_${lower}.log)"
  "$PY" "$HERE/run_recbole.py" "$m" --out "$HERE/results/recbole_${lower}.json" > "logs/recbole_${lower}.log" 2>&1 \
    || { echo "[run] $m FAILED, see logs/recbole_${lower}.log" >&2; tail -20 "logs/recbole_${lower}.log" >&2; exit 1; }
  tail -n 60 "logs/recbole_${lower}.log" | sed -n '/^{/,$p'
done
echo "[run] done"
