"""`harness export ... --score`: what you ship, scored. The exported artifact is loaded as a user loads it
(export.load_exported: AutoModelForCausalLM / AutoPeftModelForCausalLM from the folder), answers the
run's held-out split with the technique's conversation (shots, retrieval) through the same measured
evaluation as every technique (evaluate.phase.evaluate_heldout), and is stored as a row of its own,
`<technique>@<format>` (lora@merged), with the paired comparison against the in-memory technique's
answers on the same examples: the score difference with its 95% CI and p (analysis.stats), and how many
answers changed. A format that changes the weights (a quantized GGUF) shows its cost here, measured.
"""

from __future__ import annotations

from pathlib import Path

from harness import prompting
from harness.deploy import export, loader
from harness.yamlconfig import ConfigError

SOURCE_FIGURES = ("train_seconds", "train_tokens", "train_steps", "trainable_params", "total_params")


def score_export(run_dir: str | Path, technique: str, folder: str | Path, to: str):
    """Score the export in `folder` and record its row in the run; (the row, the source row)."""
    from harness.analysis.ownership import run_costs
    from harness.analysis.stats import paired_difference
    from harness.evaluate.phase import evaluate_heldout
    from harness.rows import make_row

    store = loader.open_run(run_dir)
    source = loader.reported_row(store, technique)
    spec, ctx = loader.context(store, technique)
    loaded = export.load_exported(folder, ctx.device)
    if loaded is None:
        raise ConfigError(f"{folder} holds no model (a {spec.kind} technique's adapter); --score an export --to merged")
    model, tokenizer = loaded
    served = loader.Served(
        technique,
        spec,
        ctx,
        model,
        tokenizer,
        prompting.draw_shots(ctx.task, getattr(spec, "shots", 0), ctx.recipe.seed),
    )
    retrieval = getattr(spec, "retrieval", None)
    if retrieval is not None:
        from harness.techniques.rag import Augmenter

        served.augment = Augmenter(retrieval, ctx.index(retrieval), tokenizer)
    name = f"{technique}@{to}"
    outcome = evaluate_heldout(ctx, name, model, tokenizer, lambda e: served.prompt(served.request(e)))
    predictions = [p | {"seed": ctx.recipe.seed} for p in outcome.predictions]
    reference = [p for p in store.predictions(technique) if p.get("seed", ctx.recipe.seed) == ctx.recipe.seed]
    difference = paired_difference(predictions, reference)
    before = {p["id"]: p["predicted"] for p in reference}
    values = (
        outcome.values
        | {k: source.get(k) for k in SOURCE_FIGURES}
        | {
            "export_of": technique,
            "export_format": to,
            "export_folder": str(Path(folder).resolve()),
            "export_answers_changed": sum(before.get(p["id"]) != p["predicted"] for p in predictions),
            "export_score_diff": difference.diff if difference else None,
            "export_diff_ci_low": difference.ci_low if difference else None,
            "export_diff_ci_high": difference.ci_high if difference else None,
            "export_p_value": difference.p_value if difference else None,
            "wall_seconds": outcome.values.get("eval_seconds"),
            "peak_memory_bytes": outcome.values.get("eval_peak_memory_bytes"),
            "device": ctx.device,
            "dtype": str(model.dtype).removeprefix("torch."),
        }
    )
    row = make_row(name, spec.kind, "ok", **values)
    costs = run_costs(row, store.meta.get("usd_per_hour") or ctx.recipe.cost.usd_per_hour)
    row = row | costs | {"cost_usd": source.get("cost_usd"), "train_cost_usd": source.get("train_cost_usd")}
    store.record(row, predictions)
    return row, source
