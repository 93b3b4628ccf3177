#!/usr/bin/env bash
# Fill bench/gpu/wheels/ (ignored by git) with every wheel the harness needs on the GPU machine that its
# image lacks (bench/gpu/image-packages.txt), for that machine's Python (3.12, x86-64 Linux), bitsandbytes
# slimmed to its CPU and CUDA 13.0 libraries. Run it here, where PyPI is reachable; it prints the total,
# which must stay under the device call's 64 MiB. How it works: bench/gpu/wheels.py.
#
#     bash bench/gpu/wheels.sh               # then the one device call: see bench/gpu/run.sh
#     bash bench/gpu/wheels.sh --cuda 128    # another image's CUDA (torch.version.cuda without the dot)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" bench/gpu/wheels.py "$@"
