"""TensorBoard event files: the Trainer's TensorBoardCallback (report_to: tensorboard) writes each
training cell's curves to <folder>/<cell id>; the summary writes <folder>/<technique>: the row's
figures as scalars, the recipe and REPORT.md as text, the plots as images. tensorboardX is enough
(about 90 kB); the full tensorboard package also works."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import field_validator

from harness import tracking
from harness.tracking import summary
from harness.yamlconfig import RelativeToFile, Strict, expand_path


class TensorboardSettings(Strict):
    """`tracking: {tensorboard: {...}}`: event files <dir>/<recipe>/<run-id>/<cell> for training curves,
    .../<technique> for the summary (the row's figures as scalars, the recipe and REPORT.md as text, the
    plots as images)."""

    dir: Annotated[str | None, RelativeToFile()] = None  # None: <run folder>/tensorboard

    _expand = field_validator("dir")(classmethod(lambda cls, v: v if v is None else expand_path(v)))


def summary_writer():
    """The SummaryWriter class transformers' callback would use: tensorboardX's or torch's."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter


class Tracker:
    name = report_to = "tensorboard"

    def __init__(self, settings: TensorboardSettings, recipe):
        self.settings, self.recipe = settings, recipe

    def open(self, store) -> dict:
        summary_writer()  # fail here, with a warning, rather than in every cell
        if self.settings.dir is None:
            folder = store.run_dir / "tensorboard"
        else:  # a folder shared by runs: one sub-folder per harness run
            folder = Path(self.settings.dir) / summary.run_name(store)
        return {"dir": str(folder.resolve())}

    def attach(self, state: dict, cell, technique: str) -> dict[str, str]:
        summary_writer()
        return {"TENSORBOARD_LOGGING_DIR": str(Path(state["dir"]) / cell.id)}

    def detach(self, status: str) -> None:
        """The callback closes its writer when training ends."""

    def summarize(self, state: dict, store, status: str) -> None:
        import numpy as np
        from PIL import Image

        writer_class, files = summary_writer(), summary.files(store)
        for row in store.ordered_rows():
            writer = writer_class(log_dir=str(Path(state["dir"]) / row["technique"]))
            try:
                for key, value in summary.figures(row).items():
                    writer.add_scalar(f"summary/{key}", value, 0)
                for path in files:
                    if path.suffix == ".png":
                        image = np.asarray(Image.open(path).convert("RGB"))
                        writer.add_image(f"plots/{path.stem}", image, 0, dataformats="HWC")
                    else:  # markdown renders in TensorBoard's text tab; YAML inside a code block
                        text = path.read_text()
                        writer.add_text(path.name, text if path.suffix == ".md" else f"```yaml\n{text}\n```", 0)
            finally:
                writer.close()


tracking.register(
    tracking.Backend(
        "tensorboard",
        TensorboardSettings,
        Tracker,
        modules=("tensorboardX", "tensorboard"),
        install="'adapt-harness[tracking]' (tensorboardX), or tensorboard",
        description="TensorBoard event files per training cell and per technique",
    )
)
