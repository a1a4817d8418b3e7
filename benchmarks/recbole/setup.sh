#!/usr/bin/env bash
# Create benchmarks/recbole/.venv with RecBole 1.2.1 (CPU torch) and patch it for torch>=2.6.
# Idempotent: re-running skips whatever is already done.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$PY" ]; then
  echo "[setup] creating venv at $VENV"
  "$PYTHON" -m venv "$VENV"
fi

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  # torch FIRST, pinned: a CPU wheel of 2.13.0 is on local disk; other versions would download GBs.
  echo "[setup] installing torch==2.13.0"
  "$PY" -m pip install "torch==2.13.0"
fi

if ! "$PY" - <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
import numpy, pandas, scipy, setuptools, recbole
ok = (version("recbole") == "1.2.1"
      and int(numpy.__version__.split(".")[0]) < 2
      and tuple(int(x) for x in pandas.__version__.split(".")[:2]) < (2, 3)
      and tuple(int(x) for x in scipy.__version__.split(".")[:2]) < (1, 14)
      and int(setuptools.__version__.split(".")[0]) < 70)
sys.exit(0 if ok else 1)
PYEOF
then
  echo "[setup] installing recbole==1.2.1 and pins"
  # torch==2.13.0 repeated so pip never swaps it for another version.
  "$PY" -m pip install "torch==2.13.0" "recbole==1.2.1"
  # RecBole 1.2.1 predates numpy 2 / pandas 2.3; ray (imported by recbole) needs pkg_resources.
  # torch 2.13 declares setuptools>=77, so pip warns about that conflict; it is harmless here (torch is
  # not reinstalled and does not need setuptools at run time).
  "$PY" -m pip install "numpy<2" "pandas<2.3" "scipy<1.14" "setuptools<70"
fi

# torch>=2.6 defaults torch.load(weights_only=True); RecBole checkpoints pickle its Config object.
TRAINER="$("$PY" -c 'import os, importlib.util as u; print(os.path.join(os.path.dirname(u.find_spec("recbole").origin), "trainer", "trainer.py"))')"
sed -i \
  -e 's/torch\.load(resume_file, map_location=self\.device)/torch.load(resume_file, map_location=self.device, weights_only=False)/' \
  -e 's/torch\.load(checkpoint_file, map_location=self\.device)/torch.load(checkpoint_file, map_location=self.device, weights_only=False)/' \
  "$TRAINER"
n="$(grep -c 'weights_only=False' "$TRAINER" || true)"
if [ "$n" -lt 2 ]; then
  echo "[setup] ERROR: weights_only patch not applied to $TRAINER (found $n)" >&2
  exit 1
fi

"$PY" -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
"$PY" -c 'import torch, recbole, numpy, pandas, scipy; from recbole.quick_start import run_recbole; print("[setup] ok: torch", torch.__version__, "recbole", recbole.__version__, "numpy", numpy.__version__, "pandas", pandas.__version__, "scipy", scipy.__version__)'
