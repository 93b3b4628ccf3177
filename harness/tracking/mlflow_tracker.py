"""MLflow: a parent run per harness run, a nested run per technique, and under it one run per training
cell that the Trainer's MLflowCallback (report_to: mlflow) fills with the training curves.

The driver uses MlflowClient with explicit run ids only (no fluent active-run state in a process that
may run several harness runs); a worker makes its cell's run the active one, so that the callback
logs into it rather than starting a run of its own, and the validation loss taken after training
lands there too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

from pydantic import field_validator

from harness import tracking
from harness.rows import RowLike
from harness.tracking import summary
from harness.yamlconfig import RelativeToFile, Strict, beside, expand_path


def _sqlite_beside(uri: str, folder: Path) -> str:
    """A sqlite:/// URI written in a recipe: its relative database path is relative to the recipe's folder."""
    prefix = "sqlite:///"
    return prefix + beside(uri.removeprefix(prefix), folder) if uri.startswith(prefix) else uri


class MlflowSettings(Strict):
    """`tracking: {mlflow: {...}}`: a parent run per harness run, a nested run per technique (its row's
    figures, the recipe, REPORT.md and plots) and, under it, one run per training cell with the Trainer's
    curves."""

    # sqlite:///path/mlflow.db works offline; http(s)://host for a tracking server; None:
    # MLFLOW_TRACKING_URI, else MLflow's default. A relative sqlite path is made absolute here, so
    # worker processes started elsewhere write to the same database.
    uri: Annotated[str | None, RelativeToFile(_sqlite_beside)] = None
    experiment: str | None = None  # None: the recipe's name

    @field_validator("uri")
    @classmethod
    def _absolute_sqlite(cls, uri):
        if uri is None:
            return None
        uri = expand_path(uri)
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + str(Path(uri.removeprefix(prefix)).resolve())
        return uri


TERMINAL = {"ok": "FINISHED", "skipped": "FINISHED", "failed": "FAILED", "killed": "KILLED"}  # row status -> run


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def metric_key(key: str) -> str:
    """MLflow accepts letters, digits and _-. :/ in names (as transformers' own callback sanitises)."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", key)


class Tracker:
    name = report_to = "mlflow"

    def __init__(self, settings: MlflowSettings, recipe):
        self.settings, self.recipe = settings, recipe
        self.run_id: str | None = None  # a worker's cell run

    def open(self, store) -> dict:
        import mlflow

        uri = self.settings.uri or mlflow.get_tracking_uri()  # resolved once: every worker writes there
        client = _client(uri)
        experiment = self._experiment(client, uri)
        tags = {"harness.run_dir": str(store.run_dir), "harness.recipe": self.recipe.name}
        parent = client.create_run(experiment, run_name=summary.run_name(store), tags=tags).info.run_id
        techniques = {t.name: self._child(client, experiment, parent, t.name, t.kind) for t in self.recipe.techniques}
        return {"uri": uri, "experiment_id": experiment, "parent": parent, "techniques": techniques}

    def _experiment(self, client, uri: str) -> str:
        name = self.settings.experiment or self.recipe.name
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # artifacts beside a local database, not in ./mlruns of whatever folder the run started from
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)

    @staticmethod
    def _child(client, experiment: str, parent: str, name: str, kind: str) -> str:
        tags = {"mlflow.parentRunId": parent, "harness.technique": name, "harness.kind": kind}
        return client.create_run(experiment, run_name=name, tags=tags).info.run_id

    # --- worker side ---------------------------------------------------------------------------

    def attach(self, state: dict, cell, technique: str) -> dict[str, str]:
        import mlflow

        tags = {
            "mlflow.parentRunId": state["techniques"][technique],
            "harness.technique": technique,
            "harness.cell": cell.id,
            "harness.seed": str(cell.seed),
        }
        run = _client(state["uri"]).create_run(state["experiment_id"], run_name=cell.id, tags=tags)
        mlflow.set_tracking_uri(state["uri"])
        mlflow.start_run(run_id=run.info.run_id)  # active: MLflowCallback logs into it instead of starting one
        self.run_id = run.info.run_id
        return {"MLFLOW_TRACKING_URI": state["uri"]}

    def detach(self, status: str) -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(TERMINAL.get(status, "FAILED"))  # waits for the callback's asynchronous logging

    # --- driver side, after the report ---------------------------------------------------------

    def summarize(self, state: dict, store, status: str) -> None:
        """Each row's figures as metrics, its settings as params, the run's files as artifacts."""
        client = _client(state["uri"])
        files = summary.files(store)
        for row in store.ordered_rows():
            name = row["technique"]
            if name not in state["techniques"]:  # a row no recipe entry made (the majority floor)
                parent, experiment = state["parent"], state["experiment_id"]
                state["techniques"][name] = self._child(client, experiment, parent, name, row["kind"])
                store.save()
            run_id = state["techniques"][name]
            self._log_row(client, run_id, row, summary.settings(store, name))
            self._log_files(client, run_id, files)
            client.set_terminated(run_id, TERMINAL.get(row["status"], "FAILED"))
        for name, run_id in state["techniques"].items():  # planned, but the run stopped before it
            if not any(r["technique"] == name for r in store.rows):
                client.set_terminated(run_id, "KILLED")
        self._log_files(client, state["parent"], files)
        client.set_terminated(state["parent"], status)

    @staticmethod
    def _log_row(client, run_id: str, row: RowLike, params: dict[str, str]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(k), v, now, 0) for k, v in summary.figures(row).items()]
        tags = [RunTag(f"harness.{k}", v[:5000]) for k, v in summary.labels(row).items()]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        entries = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, max(len(entries), len(tags)), 100):  # MLflow's limit per batch
            client.log_batch(run_id, params=entries[start : start + 100], tags=tags[start : start + 100])

    @staticmethod
    def _log_files(client, run_id: str, files: list[Path]) -> None:
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path="plots" if path.suffix == ".png" else None)


tracking.register(
    tracking.Backend(
        "mlflow",
        MlflowSettings,
        Tracker,
        modules=("mlflow",),
        install="'adapt-harness[tracking]' (mlflow-skinny), or mlflow",
        description="a run per harness run, nested runs per technique and per training cell",
    )
)
