"""A plain multi-task run whose driver is SIGKILLed, with its whole process group, at random points: no file
in the run folder is torn, no finished row is lost, and `--resume` finishes the run without redoing a
finished cell. (A cell killed under a running driver, and a killed study with search: test_study.py.)

The kill points are random but seeded (HARNESS_KILL_SEED, default 0; a failure prints its points): after a
random number of finished cells, then a random further delay, so kills land between cells, inside one (a
model loading, training, saving), in the driver's merge and report writing, and across the task boundary."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, run_cli, tiny_recipe

TASKS = ("ticket-routing", "product-catalogue")
TECHNIQUES = """\
  - {name: zero, kind: prompt}
  - {name: few, kind: prompt, shots: 2}
  - {name: lora, kind: lora, train: {max_steps: 2, batch_size: 4, limit: 8}, lora: {rank: 2, alpha: 4}}
"""
CELLS = len(TASKS) * 3  # one cell per technique and task (one seed, no search)
HELDOUT = "eval:\n  heldout: {limit: 4, batch_size: 4, max_new_tokens: 2, bootstrap_samples: 100}\n"
SEED = int(os.environ.get("HARNESS_KILL_SEED", "0"))
MAX_EXTRA_DELAY = 1.5  # seconds after the chosen cell finished: less than any one cell takes here


def multi_task_recipe(write, tiny_model_dir, out: Path) -> Path:
    text = tiny_recipe(tiny_model_dir, out, TECHNIQUES).split("eval:")[0] + HELDOUT
    return write("r.yaml", text.replace("task: ticket-routing", f"task: [{', '.join(TASKS)}]"))


def start_driver(args, log: Path) -> subprocess.Popen:
    """`python -m harness.cli ARGS` on this checkout, in its own process group (driver, fork server and cells)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *map(str, args)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finished_cells(out: Path) -> dict[Path, tuple[int, str]]:
    """Every finished cell's result file -> (mtime, text)."""
    found = {}
    for path in out.glob("tiny/*/*/cells/*.json"):
        text = path.read_text()
        if json.loads(text)["row"]["status"] == "ok":
            found[path] = (path.stat().st_mtime_ns, text)
    return found


def kill_at_random_point(driver: subprocess.Popen, out: Path, rng: random.Random, log: Path) -> str:
    """SIGKILL the driver's process group once a seeded random number of cells have finished, plus a random
    delay; returns where, for failure messages."""
    after = rng.randrange(len(finished_cells(out)), CELLS)  # some cell always remains: the kill is mid-run
    delay = rng.uniform(0, MAX_EXTRA_DELAY)
    deadline = time.monotonic() + 300
    while not list(out.glob("tiny/*/*/results.json")) or len(finished_cells(out)) < after:
        assert driver.poll() is None, f"the run ended before its kill (after {after} cells):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no progress in 300 s:\n{log.read_text()}"
        time.sleep(0.1)
    time.sleep(delay)
    assert driver.poll() is None, f"the run ended before its kill (after {after} cells + {delay:.2f}s)"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return f"after {after} finished cell(s) + {delay:.2f}s"


def assert_no_torn_file(run_dir: Path, where: str) -> None:
    """Every results/predictions/export/plot file reads whole (a .partial folder is an unfinished write)."""
    import pandas as pd
    from PIL import Image

    readers = {
        ".json": lambda p: json.loads(p.read_text()),
        ".jsonl": lambda p: [json.loads(line) for line in p.read_text().splitlines()],
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".png": lambda p: Image.open(p).verify(),
    }
    for path in sorted(run_dir.rglob("*")):
        if path.suffix in readers and path.is_file() and not any(part.endswith(".partial") for part in path.parts):
            try:
                readers[path.suffix](path)
            except Exception as exc:  # noqa: BLE001 — any reader's error means a torn file
                pytest.fail(f"killed {where}: {path.relative_to(run_dir)} does not read: {exc}")


def stored_rows(run_dir: Path) -> dict[tuple[str, str], dict]:
    """(task folder, technique) -> row, with the technique's stored predictions."""
    rows = {}
    for results in run_dir.glob("*/results.json"):
        for row in json.loads(results.read_text())["rows"]:
            predictions = results.parent / "predictions" / f"{row['technique']}.jsonl"
            rows[results.parent.name, row["technique"]] = (row, predictions.is_file() and predictions.read_text())
    return rows


def kill_and_resume(write, tiny_model_dir, tmp_path, kills: int) -> None:
    out, log, rng = tmp_path / "out", tmp_path / "driver.log", random.Random(SEED)
    driver = start_driver(["run", multi_task_recipe(write, tiny_model_dir, out)], log)
    points, cells, rows, run_dir = [], {}, {}, None
    for attempt in range(kills):
        if attempt and len(cells) == CELLS:  # the last kill came after every cell: nothing left to kill in
            break
        if attempt:  # a resumed run killed in turn
            driver = start_driver(["run", "--resume", run_dir], log)
        points.append(kill_at_random_point(driver, out, rng, log))
        (run_dir,) = (out / "tiny").iterdir()
        where = f"{' then '.join(points)} (HARNESS_KILL_SEED={SEED})"
        assert_no_torn_file(run_dir, where)
        now_cells, now_rows = finished_cells(out), stored_rows(run_dir)
        assert {p: now_cells.get(p) for p in cells} == cells, f"killed {where}: a finished cell was redone or lost"
        assert {k: now_rows.get(k) for k in rows} == rows, f"killed {where}: a finished row changed or was lost"
        cells, rows = now_cells, now_rows

    resumed = run_cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, f"killed {where}:\n{resumed.output}"
    assert_no_torn_file(run_dir, f"{where}, then resumed")
    after_cells, after_rows = finished_cells(out), stored_rows(run_dir)
    assert len(after_cells) == CELLS
    assert {p: after_cells[p] for p in cells} == cells, f"killed {where}: --resume redid a finished cell"
    assert {k: after_rows[k] for k in rows} == rows, f"killed {where}: --resume changed a finished row"
    floors = {("ticket-routing", "majority"), ("product-catalogue", "echo-input")}  # each task's floor row
    expected = {(task, name) for task in TASKS for name in ("zero", "few", "lora")} | floors
    assert set(after_rows) == expected and all(row["status"] == "ok" for row, _ in after_rows.values())
    kept = Counter(
        cell_id
        for line in resumed.output.splitlines()
        if line.startswith("kept ")
        for cell_id in line.partition(": ")[2].split(", ")
    )
    assert kept == Counter(path.stem for path in cells), f"killed {where}: --resume said it kept {kept}"


def test_a_multi_task_run_killed_at_a_random_point_resumes_losing_and_redoing_nothing(write, tiny_model_dir, tmp_path):
    kill_and_resume(write, tiny_model_dir, tmp_path, kills=1)


@pytest.mark.slow
def test_a_multi_task_run_killed_three_times_resumes_losing_and_redoing_nothing(write, tiny_model_dir, tmp_path):
    kill_and_resume(write, tiny_model_dir, tmp_path, kills=3)
