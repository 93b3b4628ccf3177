"""The study the executor tests run on every executor (tests/test_executors.py: local and Slurm;
tests/test_executors_ray.py: Ray), the figures that must not depend on the executor, and the local
reference run. Two files, so that pytest-xdist (--dist loadfile) runs the Ray and the Slurm halves at once."""

import json
import socket
import sys
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli, tiny_study

from harness.results import RunStore

BIN = Path(sys.executable).parent
STUDY = """\
  - {name: zero, kind: prompt}
  - {name: few, kind: prompt, shots: 2}
  - name: lora
    kind: lora
    train: {max_steps: 2, batch_size: 4, limit: 16}
    lora: {rank: 2, alpha: 4}
    search: {space: {train.learning_rate: [1.0e-3, 1.0e-2]}, objective: validation_loss}
  - {name: ddp, kind: full, train: {max_steps: 2, batch_size: 2, limit: 16, distributed: {processes: 2}}}
"""
EXTRA = """\
search_budget: 2
eval:
  validation: {size: 10}
  heldout: {limit: 8, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 100}
executor: {cpus_per_cell: 1}   # the same torch threads on every executor, so the same floating point
"""


def study_recipe(write, model, out, across_nodes: bool = False, only: tuple[str, ...] = ()):
    """The study; `across_nodes`: its 2-rank cell as 2 nodes of one rank each (the same ranks, so the same row);
    `only`: these techniques of it (each row depends on its own cells alone, so it equals the whole study's)."""
    study = STUDY.replace("{processes: 2}", "{processes: 1, nodes: 2}") if across_nodes else STUDY
    if only:
        entries = ["  - " + entry for entry in study.split("  - ")[1:]]
        study = "".join(e for e in entries if any(f"name: {name}" in e for name in only))
    return write("study.yaml", tiny_study(model, out, study, EXTRA))


def figures(run_dir: Path) -> dict:
    """What must not depend on the executor: rows, predictions, and every trial's values and objective."""
    store = RunStore.open(run_dir)
    rows = {r["technique"]: (r["status"], r["score"], r.get("chosen"), r.get("validation_loss")) for r in store.rows}
    answers = {t: [(p["seed"], p["id"], p["predicted"]) for p in store.predictions(t)] for t in rows}
    trials = sorted(
        (json.dumps(c["params"], sort_keys=True), c["objective"]) for c in store.cells if c["trial"] is not None
    )
    return {"rows": rows, "answers": answers, "trials": trials}


def same_figures(a: dict, b: dict) -> None:
    """`a` (a run of the study or of some of its techniques) has the figures `b` (the whole study) has."""
    if a["rows"].keys() < b["rows"].keys():  # some techniques only: compare those
        b = {
            "rows": {t: b["rows"][t] for t in a["rows"]},
            "answers": {t: b["answers"][t] for t in a["rows"]},
            "trials": b["trials"] if a["trials"] else [],
        }
    assert a["answers"] == b["answers"]
    assert a["rows"].keys() == b["rows"].keys()
    for name, (status, score, chosen, loss) in a["rows"].items():
        other = b["rows"][name]
        assert (status, score, chosen) == other[:3], name
        assert loss == (None if other[3] is None else pytest.approx(other[3], rel=1e-5)), name
    assert [t[0] for t in a["trials"]] == [t[0] for t in b["trials"]]
    assert [t[1] for t in a["trials"]] == pytest.approx([t[1] for t in b["trials"]], rel=1e-5)


def run_local_study(tiny_model_dir, tmp_path_factory):
    """The reference: the study on the local executor."""
    folder = tmp_path_factory.mktemp("local")
    recipe = folder / "study.yaml"
    recipe.write_text(tiny_study(tiny_model_dir, folder / "out", STUDY, EXTRA))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    return figures(only_run_dir(folder / "out"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def across_nodes(run_dir) -> None:
    """The study's 2-node cell: one row over both nodes' ranks, node 1 trained and stopped, node 0 evaluated."""
    (row,) = [r for r in RunStore.open(run_dir).rows if r["technique"] == "ddp"]
    assert row["train_world_size"] == 2 and len(row["rank_peak_memory_bytes"]) == 2
    (follower,) = (run_dir / "logs").glob("ddp.seed-0*.node1.log")
    assert "[node 1] trained; node 0 evaluates the cell" in follower.read_text()
