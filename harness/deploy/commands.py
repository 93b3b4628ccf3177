"""The deploy commands: `harness export`, `harness serve` and `harness loadtest` (registered on harness.cli's
group). Light at import, as every command module: each imports what it runs in its own body."""

from __future__ import annotations

import click

from harness.cli import console, user_errors

RUN_DIR = click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
TECHNIQUE = click.option("--technique", "-t", required=True, help="The technique of the run, by its recipe name.")


@click.command("export")
@RUN_DIR
@click.argument("out", metavar="OUT", type=click.Path(file_okay=False))
@TECHNIQUE
@click.option(
    "--to",
    "to",
    type=click.Choice(["adapter", "merged", "gguf"]),
    default="merged",
    show_default=True,
    help="adapter: what the technique adds to its base model (peft adapter; a prompt's shots, RAG's passages); "
    "merged: a standalone HF model folder; gguf: for llama.cpp/Ollama (needs llama.cpp's converter).",
)
@user_errors
def export(run_dir, out, technique, to):
    """Export TECHNIQUE of the finished run RUN as a deployable artifact into the folder OUT."""
    from harness.deploy.export import export as write

    exported = write(run_dir, technique, to, out)
    console.print(f"exported {technique} ({to}) to {exported.folder}: {', '.join(exported.files)}")
