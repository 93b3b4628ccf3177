"""Search a technique's settings on the validation split with Optuna (ask/tell), one cell per trial.

The study lives in an SQLite file in the run folder (search.db), so an interrupted search resumes
where it stopped: finished trials are kept, a trial that was running is finished from its cell file
or run again with the same values. Grid search when every axis is a list, else TPE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from harness.study import BASE_MODEL_KINDS, Cell, read_result, trials_for

RunCells = Callable[[Sequence[Cell]], list[dict]]  # runs cells (through the executor), returns their results


def open_study(run_dir: Path, spec, seed: int):
    import optuna

    class AskTellGrid(optuna.samplers.GridSampler):
        """GridSampler ends an optimize() loop with study.stop() when the grid is used up, which raises
        under ask/tell; here the budget (capped at the grid's size, see trials_for) ends the search."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.search
    sampler = (AskTellGrid({k: list(v) for k, v in search.space.items()}, seed=seed)
               if search.is_grid else optuna.samplers.TPESampler(seed=seed))
    return optuna.create_study(
        storage=f"sqlite:///{Path(run_dir).resolve() / 'search.db'}", study_name=spec.name, sampler=sampler,
        direction="minimize" if search.objective == "validation_loss" else "maximize", load_if_exists=True,
    )


def distributions(spec) -> dict:
    import optuna.distributions as d

    out = {}
    for key, axis in spec.search.space.items():
        if isinstance(axis, list):
            out[key] = d.CategoricalDistribution(axis)
        elif axis.int is not None:
            out[key] = d.IntDistribution(*axis.int)
        else:
            low, high = axis.log_uniform or axis.uniform
            out[key] = d.FloatDistribution(low, high, log=axis.log_uniform is not None)
    return out


def tune(spec, recipe, run_dir: Path, run_cells: RunCells, jobs: int) -> list[dict]:
    """Run the technique's search to its budget; returns every trial cell's result, in trial order."""
    from optuna.trial import TrialState

    study = open_study(run_dir, spec, recipe.run_seeds[0])
    budget = trials_for(spec, recipe.search_budget)
    space = distributions(spec)
    results: dict[int, dict] = {}

    def trial_cell(number: int, params: dict) -> Cell:
        # trials train and score with the first seed; the chosen values then run with every seed
        return Cell(spec.name, recipe.run_seeds[0], "validation", params, trial=number,
                    objective=spec.search.objective)

    def finish(cells: list[Cell]) -> None:
        for cell, result in zip(cells, run_cells(cells)):
            results[cell.trial] = result
            value = result["row"].get("objective")
            if value is None:
                study.tell(cell.trial, state=TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(cell.trial, value, skip_if_finished=True)

    for trial in study.trials:  # finished trials (failed ones too: they used the budget) are read back, not run
        result = read_result(run_dir, trial_cell(trial.number, trial.params))
        if trial.state != TrialState.RUNNING and result is not None:
            results[trial.number] = result
    stale = [t for t in study.trials if t.state == TrialState.RUNNING]  # interrupted: its cell file decides
    if stale:
        finish([trial_cell(t.number, t.params) for t in stale])
    # base-model readers ask every trial at once (they share one process); trained kinds ask `jobs` at a time
    batch = budget if spec.kind in BASE_MODEL_KINDS else jobs
    while len(study.trials) < budget:
        asked = [study.ask(space) for _ in range(min(batch, budget - len(study.trials)))]
        finish([trial_cell(t.number, t.params) for t in asked])
    return [results[n] for n in sorted(results)]
