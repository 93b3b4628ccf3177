"""Executor benchmark: one study's cells on the local executor (--jobs 1) vs a Ray cluster, A/B interleaved.

Three variants of the same recipe, each a fresh `harness run` in its own output folder:
  local-1   the local executor, one cell at a time (processes forked from a preloaded server)
  ray-1     a one-machine Ray cluster started for the run, one cell at a time (cpus_per_cell = all cores)
  ray-N     the same cluster, N cells at once (cpus_per_cell = 1)
Ray's per-cell overhead is (ray-1 - local-1) / jobs: a Ray worker is a fresh interpreter that imports
torch and the libraries itself, where a local cell is forked from a server that imported them once.

    python bench/bench_executor.py                    # a shrunken study.yaml on a tiny random model
    python bench/bench_executor.py --repeats 3 recipes/study.yaml model=random:smollm2-135m ...
Prints medians and ratios; nothing is asserted (goals live here, not in timed tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHRINK = [
    "model=random:tiny-llama",
    "task=ticket-routing",
    "seeds=[0,1]",
    "search_budget=2",
    "train_sizes=[32,all]",
    "eval.validation.size=16",
    "eval.heldout.limit=16",
    "eval.heldout.max_new_tokens=8",
    "eval.lm_eval.tasks=[]",
    "techniques.full.train.max_steps=4",
    "techniques.lora.train.max_steps=4",
]


def one_run(recipe: str, overrides: list[str], variant: str, cores: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    extra = {
        "local-1": ["--jobs", "1"],
        "ray-1": ["executor.kind=ray", "executor.address=local", f"executor.cpus_per_cell={cores}"],
        f"ray-{cores}": ["executor.kind=ray", "executor.address=local", "executor.cpus_per_cell=1"],
    }[variant]
    harness = str(Path(sys.executable).parent / "harness")
    start = time.perf_counter()
    done = subprocess.run(
        [harness, "run", recipe, *overrides, f"output_dir={out}", *extra],
        capture_output=True,
        text=True,
        env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    runs = [p.parent for p in out.rglob("results.json") if (p.parent / "cells").is_dir()]
    cells = [json.loads(p.read_text()) for run in runs for p in (run / "cells").glob("*.json")]
    jobs = sum(len(list((run / "logs").glob("*.log"))) for run in runs)
    cell_seconds = sum(c["row"].get("wall_seconds") or 0 for c in cells)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "cells": len(cells), "jobs": jobs, "cell_seconds": cell_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default="recipes/study.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value; default: a shrunken study on a tiny random model")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    overrides = args.overrides or SHRINK
    cores = os.cpu_count() or 1
    variants = ["local-1", "ray-1", f"ray-{cores}"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat in range(args.repeats):  # interleaved: drift on a shared machine hits every variant alike
        for variant in variants:
            results[variant].append(one_run(args.recipe, overrides, variant, cores))
            print(f"repeat {repeat} {variant}: {results[variant][-1]}", flush=True)
    median = {v: statistics.median(r["seconds"] for r in rs) for v, rs in results.items()}
    jobs, cells = results["local-1"][0]["jobs"], results["local-1"][0]["cells"]
    print(f"\n{cells} cells in {jobs} jobs; {cores} CPU cores; median wall seconds of {args.repeats} runs each:")
    for variant in variants:
        print(f"  {variant:8s} {median[variant]:7.1f} s   ratio to local-1: {median[variant] / median['local-1']:.2f}")
    print(f"Ray's overhead per job (ray-1 - local-1) / jobs: {(median['ray-1'] - median['local-1']) / jobs:.1f} s")


if __name__ == "__main__":
    main()
