"""The light commands (--help, validate, tasks, models, report, compare, check, calibrate) import neither torch nor
transformers (nor mlflow, wandb or tensorboardX, nor ray or submitit): the CI gate runs where they are not
installed, and `harness --help` answers at once."""

import os
import shutil
import subprocess
import sys
import textwrap

from conftest import REPO

# and no tracker's library: validate checks that a recipe's `tracking:` packages are installed, importing none;
# nor a cluster executor's: their settings are checked without it
HEAVY = ("torch", "transformers", "mlflow", "wandb", "tensorboardX", "ray", "submitit")

# Runs in a fresh interpreter: this test process has imported torch already (conftest, other tests).
SCRIPT = textwrap.dedent("""
    import sys

    from click.testing import CliRunner

    def heavy():
        return [name for name in {heavy!r} if name in sys.modules]

    import harness.cli

    assert not heavy(), f"importing harness.cli imported {{heavy()}}"
    run_dir = sys.argv[1]
    from importlib.util import find_spec

    # validate checks that the trackers' packages are there ([tracking] extra); where they are not, it says so
    tracked = ["--set", "tracking.mlflow.uri=sqlite:///unused.db", "--set", "tracking.tensorboard.dir=unused"]
    if not (find_spec("mlflow") and find_spec("tensorboardX")):
        tracked = []
    for args in (["--help"], ["validate", "recipes/demo.yaml"], ["validate", "recipes/demo.yaml", *tracked],
                 ["validate", "recipes/demo.yaml", "--set", "executor.kind=ray"],
                 ["validate", "recipes/demo.yaml", "--set", "executor.kind=slurm", "--set", "executor.partition=gpu"],
                 ["tasks"], ["models"], ["report", run_dir],
                 ["report", run_dir, "--format", "json"], ["report", run_dir, "--format", "pr"],
                 ["compare", run_dir, run_dir],
                 ["check", run_dir, "--baseline", run_dir],
                 ["check", run_dir, "--baseline", run_dir, "--noise-from", run_dir, "--noise-from", run_dir],
                 ["calibrate", run_dir, run_dir]):
        result = CliRunner().invoke(harness.cli.main, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert not heavy(), f"harness {{' '.join(args)}} imported {{heavy()}}"
    print("light")
""").format(heavy=HEAVY)


def test_light_commands_import_neither_torch_nor_transformers(tmp_path):
    run_dir = tmp_path / "study-example"
    shutil.copytree(REPO / "reports" / "study-example", run_dir)  # `report` rewrites REPORT.md and plots
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("light")
    assert (run_dir / "REPORT.md").is_file() and any((run_dir / "plots").glob("*.png"))
