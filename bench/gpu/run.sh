#!/usr/bin/env bash
# The GPU proof (issue 21) in ONE device call, about 8 minutes. Prepare here first (PyPI needed):
#     bash bench/gpu/wheels.sh
# then the one call (the device tool's `run`): command "bash bench/gpu/run.sh", carry ["bench/gpu/wheels"],
# timeout_s 600. It records the machine (nvidia-smi, torch and its CUDA, whether the carried bitsandbytes
# has that CUDA's library), installs the carried wheels offline, then runs bench/gpu/prove.py's steps, each
# under its own time budget. Results under $OUT (else bench/results): gpu-<card>.md and .json, steps.log, prove.log.
# Extra arguments go to prove.py, e.g. `bash bench/gpu/run.sh --steps bench plan`.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
exec > >(tee "$OUT/prove.log") 2>&1

echo "== the machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv || echo "no nvidia-smi"
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"

echo "== installing the carried wheels, offline (bench/gpu/wheels.sh made them)"
ls bench/gpu/wheels/*.whl >/dev/null 2>&1 || { echo "no wheels in bench/gpu/wheels: run bench/gpu/wheels.sh here, and carry that folder"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site bench/gpu/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -c "
import pathlib, torch, bitsandbytes
wanted = 'libbitsandbytes_cuda' + (torch.version.cuda or '').replace('.', '') + '.so'
have = sorted(p.name for p in pathlib.Path(bitsandbytes.__file__).parent.glob('libbitsandbytes_*.so'))
print('bitsandbytes', bitsandbytes.__version__, 'carries', have, '; needs', wanted, '->', 'OK' if wanted in have else 'MISSING: run wheels.sh --cuda <this CUDA>')
import trl, lm_eval, optuna, bm25s, datasets, pydantic, harness.cli
print('imports OK: trl', trl.__version__, '| lm_eval', lm_eval.__version__, '| optuna', optuna.__version__)
" || echo "an import failed: the steps that need it will say so"

echo "== the steps"
python3 bench/gpu/prove.py --out "$OUT" "$@"
