"""Weights & Biases: one run per training cell (the Trainer's WandbCallback, report_to: wandb) and one
summary run per technique, all in one group named after the harness run (W&B has no nesting). In
`mode: offline` (the default) everything is written under `dir` and uploaded later by `wandb sync`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import field_validator

from harness import tracking
from harness.tracking import summary
from harness.yamlconfig import RelativeToFile, Strict, expand_path

EXIT_CODES = {"ok": 0, "skipped": 0}


class WandbSettings(Strict):
    """`tracking: {wandb: {...}}`: one run per training cell (the Trainer's curves) and one summary run
    per technique, grouped by the harness run."""

    project: str | None = None  # None: the recipe's name
    entity: str | None = None  # a team or user; None: the account's default
    mode: Literal["offline", "online"] = "offline"  # offline: files under `dir`, uploaded later by `wandb sync`
    dir: Annotated[str | None, RelativeToFile()] = None  # None: the run folder

    _expand = field_validator("dir")(classmethod(lambda cls, v: v if v is None else expand_path(v)))


class Tracker:
    name = report_to = "wandb"

    def __init__(self, settings: WandbSettings, recipe):
        self.settings, self.recipe = settings, recipe

    def open(self, store) -> dict:
        import wandb  # noqa: F401  (fail here, with a warning, rather than in every cell)

        folder = self.settings.dir or str(store.run_dir)
        return {
            "project": self.settings.project or self.recipe.name,
            "entity": self.settings.entity,
            "mode": self.settings.mode,
            "dir": folder,
            "group": summary.run_name(store).replace("/", "-"),
        }

    def attach(self, state: dict, cell, technique: str) -> dict[str, str]:
        import wandb  # noqa: F401

        env = {
            "WANDB_PROJECT": state["project"],
            "WANDB_MODE": state["mode"],
            "WANDB_DIR": state["dir"],
            "WANDB_RUN_GROUP": state["group"],
            "WANDB_JOB_TYPE": "train",
            "WANDB_SILENT": "true",
        }
        return env | ({"WANDB_ENTITY": state["entity"]} if state["entity"] else {})

    def detach(self, status: str) -> None:
        import wandb

        if wandb.run is not None:  # the callback leaves its run open (the validation loss is logged after training)
            wandb.finish(exit_code=EXIT_CODES.get(status, 1))

    def summarize(self, state: dict, store, status: str) -> None:
        import wandb

        files = summary.files(store)
        for row in store.ordered_rows():
            run = wandb.init(
                project=state["project"],
                entity=state["entity"],
                mode=state["mode"],
                dir=state["dir"],
                group=state["group"],
                job_type="summary",
                name=row["technique"],
                config=summary.settings(store, row["technique"]) | summary.labels(row),
                settings=wandb.Settings(silent=True),
            )
            run.summary.update(summary.figures(row))
            artifact = wandb.Artifact(f"{state['group']}-report", type="report")
            for path in files:
                artifact.add_file(str(path), name=f"plots/{path.name}" if path.suffix == ".png" else path.name)
            run.log_artifact(artifact)
            run.finish(exit_code=EXIT_CODES.get(row["status"], 1))


tracking.register(
    tracking.Backend(
        "wandb",
        WandbSettings,
        Tracker,
        modules=("wandb",),
        install="wandb",
        description="W&B runs per training cell and per technique, offline by default",
    )
)
