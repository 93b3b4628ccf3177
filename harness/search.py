"""Search a technique's settings on the validation split with Optuna (ask/tell), one cell per trial.

The study lives in an SQLite file in the run folder (search.db), so an interrupted search resumes
where it stopped: finished trials are kept, a trial that was running is finished from its cell file
or run again with the same values. Grid search when every axis is a list; otherwise a small budget
(the usual one: a few trials per technique) is spread over the space by a scrambled Halton sequence, which
TPE would sample at random, and a larger one is TPE's. Each technique draws its own points (its sampler's
seed comes from the run's seed and its name), so no two techniques try the same three values.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import kinds
from harness.planning import Cell, read_result
from harness.searchspace import trials_for

RunCells = Callable[[Sequence[Cell]], list[dict]]  # runs cells (through the executor), returns their results


PRUNE_STARTUP_TRIALS = 2  # trials that always finish, so the median has something to compare with
PRUNE_CHECKS = 4  # validation-loss checks per pruned trial: often enough to stop early, few enough to stay cheap
SPACE_FILLING_TRIALS = 10  # up to this budget, quasi-random points (TPE's own random start is 10 trials)


def storage(run_dir: Path):
    """The SQLite study file; a generous lock timeout, since trial processes report to it too."""
    import optuna

    return optuna.storages.RDBStorage(
        f"sqlite:///{Path(run_dir).resolve() / 'search.db'}", engine_kwargs={"connect_args": {"timeout": 60}}
    )


def pruner(spec):
    """Median pruning for loss objectives: a trial whose validation loss trails the median of earlier
    trials at the same step stops there. A validation score needs generation, too dear to check often."""
    import optuna

    if spec.search.objective != "validation_loss" or not spec.search.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=0)


def technique_seed(seed: int, name: str) -> int:
    """The seed of one technique's sampler: the run's seed and its name, stable across processes."""
    return zlib.crc32(f"{seed}/{name}".encode())


def sampler(search, seed: int, budget: int):
    """Grid for list axes only; a scrambled Halton sequence (space-filling, log axes in log space) for a
    small budget; TPE above it."""
    import optuna

    class AskTellGrid(optuna.samplers.GridSampler):
        """GridSampler ends an optimize() loop with study.stop() when the grid is used up, which raises
        under ask/tell; here the budget (capped at the grid's size, see trials_for) ends the search."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    if search.is_grid:
        return AskTellGrid({k: list(v) for k, v in search.space.items()}, seed=seed)
    if budget <= SPACE_FILLING_TRIALS:
        with warnings.catch_warnings():  # "experimental" since optuna 3.0; its interface is all we use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="halton",  # no power-of-two sample counts, unlike Sobol
                scramble=True,
                seed=seed,
                warn_independent_sampling=False,  # list axes beside ranges are drawn at random: expected
            )
    return optuna.samplers.TPESampler(seed=seed)


def open_study(run_dir: Path, spec, seed: int, budget: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.search
    return optuna.create_study(
        storage=storage(run_dir),
        study_name=spec.name,
        sampler=sampler(search, technique_seed(seed, spec.name), budget),
        pruner=pruner(spec),
        direction="minimize" if search.objective == "validation_loss" else "maximize",
        load_if_exists=True,
    )


def pruning_callback(run_dir: Path, spec, trial_number: int):
    """A TrainerCallback for a trial cell's process: it evaluates the validation loss PRUNE_CHECKS times,
    reports each to the trial in the run's study, and stops training when the pruner says so."""
    import optuna
    from transformers import TrainerCallback

    study = optuna.load_study(study_name=spec.name, storage=storage(run_dir), pruner=pruner(spec))
    # Optuna has no public lookup from a trial's number to its id; the storage method is public
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
    trial = optuna.trial.Trial(study, trial_id)

    class Pruning(TrainerCallback):
        pruned = False

        def on_step_end(self, args, state, control, **kwargs):
            every = max(1, state.max_steps // PRUNE_CHECKS)
            if state.global_step % every == 0 and state.global_step < state.max_steps:
                control.should_evaluate = True

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics and state.global_step < state.max_steps:
                trial.report(metrics["eval_loss"], state.global_step)
                if trial.should_prune():
                    self.pruned = control.should_training_stop = True

    return Pruning()


def distributions(spec) -> dict:
    import optuna.distributions as d

    out: dict[str, d.BaseDistribution] = {}
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

    budget = trials_for(spec, recipe.search_budget)
    study = open_study(run_dir, spec, recipe.run_seeds[0], budget)
    space = distributions(spec)
    results: dict[int, dict] = {}

    def trial_cell(number: int, params: dict) -> Cell:
        # trials train and score with the first seed; the chosen values then run with every seed
        return Cell(spec.name, recipe.run_seeds[0], "validation", params, trial=number, objective=spec.search.objective)

    def finish(cells: list[Cell]) -> None:
        for cell, result in zip(cells, run_cells(cells)):
            number = cell.trial
            assert number is not None  # a trial_cell
            results[number] = result
            value = result["row"].get("objective")
            if result["row"].get("pruned"):
                study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            elif value is None:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(number, value, skip_if_finished=True)

    for trial in study.trials:  # finished trials (failed ones too: they used the budget) are read back, not run
        result = read_result(run_dir, trial_cell(trial.number, trial.params))
        if trial.state != TrialState.RUNNING and result is not None:
            results[trial.number] = result
    stale = [t for t in study.trials if t.state == TrialState.RUNNING]  # interrupted: its cell file decides
    if stale:
        finish([trial_cell(t.number, t.params) for t in stale])
    # base-model readers ask every trial at once (they share one process); trained kinds ask `jobs` at a time
    batch = budget if kinds.reads_base_model(spec.kind) else jobs
    while len(study.trials) < budget:
        asked = [study.ask(space) for _ in range(min(batch, budget - len(study.trials)))]
        finish([trial_cell(t.number, t.params) for t in asked])
    return [results[n] for n in sorted(results)]
