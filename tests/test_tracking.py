"""Tracking (`tracking:`): a real MLflow SQLite store and real TensorBoard event files, read back through
MLflow's own client and TensorBoard's event records; W&B where the wandb package is installed; and a
tracker added by a plugin file alone (one file + one registration, harness/tracking/__init__.py)."""

import importlib.util
import json
import struct
import sys

import pytest
from conftest import run_cli, run_rows, tiny_recipe

from harness import tracking
from harness.config import Recipe, load_recipe
from harness.yamlconfig import ConfigError

TECHNIQUES = (
    "  - {name: zero-shot, kind: prompt}\n"
    "  - {name: lora, kind: lora, train: {max_steps: 2, batch_size: 4, limit: 8, logging_steps: 1}, "
    "lora: {rank: 2, alpha: 4}}\n"
)


def test_a_typo_in_the_tracking_block_names_file_line_and_fix(write, tiny_model_dir, tmp_path):
    extra = "tracking:\n  mlflow: {urii: sqlite:///x.db}\n"
    path = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path, TECHNIQUES, extra))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    line = path.read_text().splitlines().index("  mlflow: {urii: sqlite:///x.db}") + 1
    assert f"{path}:{line}: unknown key 'tracking.mlflow.urii' (did you mean 'tracking.mlflow.uri'?)" in str(err.value)


def test_a_bare_key_enables_a_tracker_and_a_relative_sqlite_path_becomes_absolute(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = "tracking:\n  mlflow: {uri: sqlite:///runs.db}\n  tensorboard:\n"
    recipe = load_recipe(write("r.yaml", tiny_recipe("random:llama", tmp_path, TECHNIQUES, extra)))
    assert recipe.tracking.mlflow.uri == f"sqlite:///{tmp_path / 'runs.db'}"
    assert recipe.tracking.backends == ["mlflow", "tensorboard"] and recipe.tracking.tensorboard.dir is None
    # workers read the recipe back from its JSON: a tracker left unset stays off there (a null would switch it on)
    again = Recipe.model_validate(json.loads(json.dumps(recipe.model_dump(mode="json"))))
    assert again == recipe and again.tracking.backends == ["mlflow", "tensorboard"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_missing_tracker_package_stops_validation_with_the_pip_command(write, tiny_model_dir, tmp_path):
    extra = "tracking:\n  wandb: {project: p}\n"
    result = run_cli("validate", write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path, TECHNIQUES, extra)))
    assert result.exit_code == 2
    assert "tracking.wandb needs the wandb package, which is not installed: pip install wandb" in result.output


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from the event files in a folder (TFRecord framing around Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_mlflow_and_tensorboard_get_curves_per_cell_and_a_summary_per_technique(write, tiny_model_dir, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboardX")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    extra = f"tracking:\n  mlflow: {{uri: '{uri}', experiment: adapt}}\n  tensorboard: {{}}\n"
    run_dir, rows = run_rows(write, tiny_recipe(tiny_model_dir, tmp_path / "out", TECHNIQUES, extra), tmp_path / "out")

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("adapt")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs[f"tiny/{run_dir.name}"]
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    for name in ("zero-shot", "lora", "majority"):  # one summary run per row, nested under the harness run
        technique = runs[name]
        assert technique.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert technique.data.metrics["score"] == pytest.approx(rows[name]["score"])
        artifacts = {a.path for a in client.list_artifacts(technique.info.run_id)}
        assert {"REPORT.md", "recipe.yaml", "plots"} <= artifacts
    assert runs["lora"].data.params["train.max_steps"] == "2"
    assert runs["lora"].data.metrics["train_steps"] == 2
    # the training cell's own run, under its technique, filled by the Trainer's MLflowCallback
    cell = runs["lora.seed-0"]
    assert cell.data.tags["mlflow.parentRunId"] == runs["lora"].info.run_id and cell.info.status == "FINISHED"
    losses = client.get_metric_history(cell.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]
    assert [m.value for m in losses] == pytest.approx([h["loss"] for h in rows["lora"]["train_curve"]])
    assert "zero-shot.seed-0" not in runs  # an untrained cell has no training run
    assert any(a.path == "REPORT.md" for a in client.list_artifacts(parent.info.run_id))

    board = run_dir / "tensorboard"
    assert [step for step, _ in tensorboard_scalars(board / "lora.seed-0")["train/loss"]] == [1, 2]
    assert tensorboard_scalars(board / "zero-shot")["summary/score"] == [(0, pytest.approx(rows["zero-shot"]["score"]))]


def test_a_tracker_that_cannot_start_warns_and_the_comparison_still_runs(write, tiny_model_dir, tmp_path):
    pytest.importorskip("mlflow")
    (tmp_path / "a-file").write_text("")  # a database path under a file cannot be opened
    extra = f"tracking:\n  mlflow: {{uri: 'sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}'}}\n"
    techniques = "  - {name: zero-shot, kind: prompt}\n"
    result = run_cli("run", write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", techniques, extra)))
    assert result.exit_code == 0, result.output
    assert "warning: tracking.mlflow: starting the run failed" in result.output
    assert "the comparison goes on without it" in result.output
    (run_dir,) = (tmp_path / "out" / "tiny").iterdir()
    assert (run_dir / "REPORT.md").is_file()


def wandb_records(path):
    """The records of an offline W&B run file: a 7-byte W&B header, then LevelDB's log format (32 KiB
    blocks of chunks with a 7-byte header: checksum, length, type) around protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, at, pending = path.read_bytes(), 7, b""
    while at + 7 <= len(data):
        if 32768 - at % 32768 < 7:  # a block's tail too short for a header is padding
            at += 32768 - at % 32768
            continue
        length, kind = struct.unpack("<HB", data[at + 4 : at + 7])
        pending, at = pending + data[at + 7 : at + 7 + length], at + 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def test_wandb_offline_gets_a_run_per_training_cell_and_a_summary_per_technique(write, tiny_model_dir, tmp_path):
    pytest.importorskip("wandb")  # in no extra (a 20 MB wheel): this runs where wandb is installed
    extra = f"tracking:\n  wandb: {{project: adapt, dir: '{tmp_path / 'wb'}'}}\n"
    run_dir, rows = run_rows(write, tiny_recipe(tiny_model_dir, tmp_path / "out", TECHNIQUES, extra), tmp_path / "out")
    runs = {}  # display name -> {"run": RunRecord, "history": [...], "summary": {...}, "artifacts": [...]}
    for path in (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"):
        found = {"history": [], "summary": {}, "artifacts": []}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                found["run"] = record.run
            elif kind == "history":
                found["history"].append({i.key or "/".join(i.nested_key): i.value_json for i in record.history.item})
            elif kind == "summary":
                found["summary"] |= {i.key or "/".join(i.nested_key): i.value_json for i in record.summary.update}
            elif kind == "artifact":
                found["artifacts"] += [entry.path for entry in record.artifact.manifest.contents]
        runs[found["run"].display_name] = found
    assert set(runs) == {"lora.seed-0", "zero-shot", "lora", "majority"}
    group = f"tiny-{run_dir.name}"
    assert {r["run"].run_group for r in runs.values()} == {group}
    assert {r["run"].project for r in runs.values()} == {"adapt"}
    cell = runs["lora.seed-0"]
    assert cell["run"].job_type == "train"
    losses = [float(h["train/loss"]) for h in cell["history"] if "train/loss" in h]
    assert losses == pytest.approx([h["loss"] for h in rows["lora"]["train_curve"]])
    summary = runs["lora"]
    assert summary["run"].job_type == "summary"
    assert float(summary["summary"]["score"]) == pytest.approx(rows["lora"]["score"])
    assert {"REPORT.md", "recipe.yaml"} <= set(summary["artifacts"])


def test_a_tracker_failing_during_training_warns_and_the_training_goes_on(write, tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboardX")
    (tmp_path / "a-file").write_text("")  # event files cannot be written under a file
    extra = f"tracking:\n  tensorboard: {{dir: '{tmp_path / 'a-file'}'}}\n"
    techniques = TECHNIQUES.splitlines(keepends=True)[1]  # lora alone
    result = run_cli("run", write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", techniques, extra)))
    assert result.exit_code == 0, result.output
    assert "warning: tracking.tensorboard: logging the summary failed" in result.output
    (run_dir,) = (tmp_path / "out" / "tiny").iterdir()
    row = next(r for r in json.loads((run_dir / "results.json").read_text())["rows"] if r["technique"] == "lora")
    assert row["status"] == "ok" and row["train_steps"] == 2
    log = (run_dir / "logs" / "lora.seed-0.log").read_text()
    assert "tracking.TensorBoardCallback: its on_train_begin failed" in log


# A tracker written as a user would, in a file of its own, with no Trainer integration: it notes each
# trained cell (worker side) and each technique's figures (driver side) in a JSON-lines file.
LEDGER_TRACKER = """
import json

from harness import tracking
from harness.tracking import summary
from harness.yamlconfig import Strict


class LedgerSettings(Strict):
    file: str = "ledger.jsonl"  # in the run folder


class Tracker:
    name, report_to = "ledger", None  # no Trainer integration: no training curves

    def __init__(self, settings, recipe):
        self.settings, self.recipe = settings, recipe

    def open(self, store):  # the driver, before any cell: the state every worker reads
        return {"path": str(store.run_dir / self.settings.file)}

    def attach(self, state, cell, technique):  # a worker, around a trained cell: the environment to set
        self.path, self.cell = state["path"], cell.id
        return {}

    def detach(self, status):
        self.note({"cell": self.cell, "status": status})

    def summarize(self, state, store, status):  # the driver, after REPORT.md
        self.path = state["path"]
        for row in store.ordered_rows():
            self.note({"technique": row["technique"], **summary.figures(row)})

    def note(self, entry):
        with open(self.path, "a") as out:
            out.write(json.dumps(entry) + "\\n")


tracking.register(tracking.Backend("ledger", LedgerSettings, Tracker, modules=("json",), install="nothing"))
"""


@pytest.fixture
def ledger_plugin(write):
    path = write("ledger_tracker.py", LEDGER_TRACKER)
    yield path
    # the registry is process-wide: the next test loads the plugin afresh, and others never see it
    tracking.TRACKERS._items.pop("ledger", None)
    sys.modules.pop("harness_plugin_ledger_tracker", None)


def test_a_tracker_added_by_a_plugin_file_alone_gets_cells_and_summaries(
    ledger_plugin, write, tiny_model_dir, tmp_path
):
    extra = f"plugins: [{ledger_plugin}]\ntracking:\n  ledger: {{file: notes.jsonl}}\n"
    run_dir, rows = run_rows(write, tiny_recipe(tiny_model_dir, tmp_path / "out", TECHNIQUES, extra), tmp_path / "out")
    notes = [json.loads(line) for line in (run_dir / "notes.jsonl").read_text().splitlines()]
    assert [n for n in notes if "cell" in n] == [{"cell": "lora.seed-0", "status": "ok"}]  # trained cells only
    scores = {n["technique"]: n["score"] for n in notes if "technique" in n}
    assert scores == {name: pytest.approx(row["score"]) for name, row in rows.items()}


def test_a_plugin_trackers_settings_get_the_usual_recipe_errors(ledger_plugin, write):
    base = f"name: x\ntask: ticket-routing\nplugins: [{ledger_plugin}]\ntechniques:\n  - {{name: t, kind: prompt}}\n"
    path = write("a.yaml", base + "tracking:\n  ledgr:\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"{path}:7: unknown key 'tracking.ledgr' (did you mean 'tracking.ledger'?)" in message
    path = write("b.yaml", base + "tracking:\n  ledger: {fiel: x}\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"{path}:7: unknown key 'tracking.ledger.fiel' (did you mean 'tracking.ledger.file'?)" in message
    recipe = load_recipe(write("c.yaml", base + "tracking:\n  ledger:\n  tensorboard:\n"))
    assert set(recipe.tracking.backends) == {"ledger", "tensorboard"} and recipe.tracking.ledger.file == "ledger.jsonl"
    again = Recipe.model_validate(json.loads(json.dumps(recipe.model_dump(mode="json"))))
    assert again == recipe and set(again.tracking.backends) == {"ledger", "tensorboard"}


def test_the_descriptor_is_checked_when_a_tracker_registers():
    from harness.yamlconfig import Strict

    class Needy(Strict):
        token: str

    with pytest.raises(TypeError, match="every setting needs a default .*; token has none"):
        tracking.Backend("needy", Needy, object, modules=("json",), install="nothing")
    with pytest.raises(ValueError, match="registered twice"):
        tracking.register(tracking.get("mlflow"))
