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


def torn_files(run_dir: Path) -> list[str]:
    """Every results/predictions/export/plot file that does not read whole, with the reader's error (a
    .partial folder is an unfinished write, not a torn file)."""
    import pandas as pd
    from PIL import Image

    readers = {
        ".json": lambda p: json.loads(p.read_text()),
        ".jsonl": lambda p: [json.loads(line) for line in p.read_text().splitlines()],
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".png": lambda p: Image.open(p).verify(),
    }
    torn = []
    for path in sorted(run_dir.rglob("*")):
        if path.suffix in readers and path.is_file() and not any(part.endswith(".partial") for part in path.parts):
            try:
                readers[path.suffix](path)
            except Exception as exc:  # noqa: BLE001 — any reader's error means a torn file
                torn.append(f"{path.relative_to(run_dir)} does not read: {exc}")
    return torn


def stored_rows(run_dir: Path) -> dict[tuple[str, str], dict]:
    """(task folder, technique) -> row, with the technique's stored predictions."""
    rows = {}
    for results in run_dir.glob("*/results.json"):
        for row in json.loads(results.read_text())["rows"]:
            predictions = results.parent / "predictions" / f"{row['technique']}.jsonl"
            rows[results.parent.name, row["technique"]] = (row, predictions.is_file() and predictions.read_text())
    return rows


def kill_and_resume(recipe: Path, out: Path, log: Path, seed: int, kills: int) -> dict:
    """Run `recipe`, SIGKILL it at up to `kills` seeded random points (resuming after each), then resume it to
    the end. Returns the tally: kill points, finished rows lost or changed, finished cells redone, torn
    files, whether the last --resume failed or left cells undone, and what went wrong where (`problems`)."""
    rng = random.Random(seed)
    driver = start_driver(["run", recipe], log)
    tally = Counter(points=0, lost_rows=0, redone_cells=0, torn_files=0, resume_failed=0)
    problems: list[str] = []
    points, cells, rows, run_dir = [], {}, {}, None

    def compare(now_cells, now_rows, where: str) -> None:
        lost = [k for k in rows if now_rows.get(k) != rows[k]]
        redone = [p.stem for p in cells if now_cells.get(p) != cells[p]]
        tally.update(lost_rows=len(lost), redone_cells=len(redone))
        problems.extend(f"killed {where}: row {k} lost or changed" for k in lost)
        problems.extend(f"killed {where}: cell {c} redone or lost" for c in redone)
        torn = torn_files(run_dir)
        tally.update(torn_files=len(torn))
        problems.extend(f"killed {where}: {t}" for t in torn)

    for attempt in range(kills):
        if attempt and len(cells) == CELLS:  # the last kill came after every cell: nothing left to kill in
            break
        if attempt:  # a resumed run killed in turn
            driver = start_driver(["run", "--resume", run_dir], log)
        points.append(kill_at_random_point(driver, out, rng, log))
        tally["points"] += 1
        (run_dir,) = (out / "tiny").iterdir()
        where = f"{' then '.join(points)} (seed {seed})"
        now_cells, now_rows = finished_cells(out), stored_rows(run_dir)
        compare(now_cells, now_rows, where)
        cells, rows = now_cells, now_rows

    resumed = run_cli("run", "--resume", run_dir)
    after_cells, after_rows = finished_cells(out), stored_rows(run_dir)
    compare(after_cells, after_rows, f"{where}, then resumed")
    floors = {("ticket-routing", "majority"), ("product-catalogue", "echo-input")}  # each task's floor row
    expected = {(task, name) for task in TASKS for name in ("zero", "few", "lora")} | floors
    finished = resumed.exit_code == 0 and len(after_cells) == CELLS and set(after_rows) == expected
    if not finished or any(row["status"] != "ok" for row, _ in after_rows.values()):
        tally["resume_failed"] += 1
        problems.append(f"killed {where}: --resume did not finish every cell:\n{resumed.output}")
    kept = Counter(
        cell_id
        for line in resumed.output.splitlines()
        if line.startswith("kept ")
        for cell_id in line.partition(": ")[2].split(", ")
    )
    if kept != Counter(path.stem for path in cells):
        problems.append(f"killed {where}: --resume said it kept {kept}")
    return {**tally, "problems": problems}


def assert_nothing_lost(write, tiny_model_dir, tmp_path, kills: int) -> None:
    out = tmp_path / "out"
    recipe = multi_task_recipe(write, tiny_model_dir, out)
    tally = kill_and_resume(recipe, out, tmp_path / "driver.log", SEED, kills)
    assert not tally["problems"], "\n".join(tally["problems"]) + f"\n(HARNESS_KILL_SEED={SEED})"
    assert tally["points"] >= 1


def test_a_multi_task_run_killed_at_a_random_point_resumes_losing_and_redoing_nothing(write, tiny_model_dir, tmp_path):
    assert_nothing_lost(write, tiny_model_dir, tmp_path, kills=1)


@pytest.mark.slow
def test_a_multi_task_run_killed_three_times_resumes_losing_and_redoing_nothing(write, tiny_model_dir, tmp_path):
    assert_nothing_lost(write, tiny_model_dir, tmp_path, kills=3)
