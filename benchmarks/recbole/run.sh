#!/usr/bin/env bash
# Full peer benchmark: venv + data conversion + RecBole Pop and BPR on Amazon Beauty (run one at a time).
# Usage: bash benchmarks/recbole/run.sh [path/to/sequences.txt]
#   MODELS="Pop BPR SASRec" bash benchmarks/recbole/run.sh   # also SASRec (default MODELS="Pop BPR")
#   SASREC_EPOCHS=5 (default 5) sets SASRec's --epochs; THREADS=N passes --threads N to every model.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PY="$HERE/.venv/bin/python"
MODELS="${MODELS:-Pop BPR}"
mkdir -p logs results

bash "$HERE/setup.sh"
"$PY" "$HERE/convert_beauty.py" "$@"

for m in $MODELS; do
  lower="$(echo "$m" | tr '[:upper:]' '[:lower:]')"
  extra=()
  if [ "$m" = SASRec ]; then extra+=(--epochs "${SASREC_EPOCHS:-5}"); fi
  if [ -n "${THREADS:-}" ]; then extra+=(--threads "$THREADS"); fi
  echo "[run] $m ${extra[*]} -> results/recbole_${lower}.json (log: logs/recbole_${lower}.log)"
  "$PY" "$HERE/run_recbole.py" "$m" ${extra[@]+"${extra[@]}"} --out "$HERE/results/recbole_${lower}.json" \
    > "logs/recbole_${lower}.log" 2>&1 \
    || { echo "[run] $m FAILED, see logs/recbole_${lower}.log" >&2; tail -20 "logs/recbole_${lower}.log" >&2; exit 1; }
  sed -n '/^{/,$p' "logs/recbole_${lower}.log"
done
echo "[run] done"
