"""Every task's floor (analysis/floor.py) and the rule that nothing below it is recommended or advised
(issue 28, items 1, 2 and 8), from constructed rows scored like the pipeline scores them; no model."""

from pathlib import Path

import pytest
from conftest import run_rows, tiny_recipe
from test_decision import LABELS, SEEDS, TEST, classification_run

from harness import metrics
from harness.analysis import decision, floor
from harness.report import study_sections, write_report
from harness.results import RunStore
from harness.rows import make_row
from harness.tasks import DataSpec, Example, Task, TaskSpec

QUESTIONS = [(f"How many watts does the Zephra D{i} kettle draw?", f"{1800 + i} W") for i in range(40)]


def open_ended_task(metric: str = "contains", examples=QUESTIONS, context: str = "") -> Task:
    spec = TaskSpec(name="catalogue", data=DataSpec(train="unused.jsonl"), metric=metric)
    test = tuple(Example(f"q{i}", question, answer, context=context) for i, (question, answer) in enumerate(examples))
    return Task("catalogue", Path("."), spec, test, test)


def open_ended_run(folder, task: Task, techniques: dict[str, list[str]]) -> RunStore:
    """The task's floor row (as the pipeline records it) plus techniques: name -> answers to the test split."""
    metric = task.spec.metric
    recipe = {"name": "catalogue", "model": {"id": "m"}, "techniques": [{"name": n} for n in techniques]}
    meta = {"recipe": recipe, "task": {"name": task.name, "metric": metric}, "run_id": "r"}
    store = RunStore(folder, meta)
    name, values, predictions = floor.floor(task, task.test, SEEDS, 200, 0)
    store.record(make_row(name, floor.KIND, "ok", **values), predictions)
    expected = [e.output for e in task.test]
    for technique, answers in techniques.items():
        scored = metrics.score(metric, expected, answers, None)
        score = scored.metrics[metric]
        row = make_row(
            technique,
            "lora",
            "ok",
            metric=metric,
            score=score,
            ci_low=score,
            ci_high=score,
            n_eval=len(answers),
            n_seeds=len(SEEDS),
            cost_usd=0.001 if technique == "zero-shot" else 0.01,
            peak_memory_bytes=2**30,
        )
        store.record(
            row,
            [
                {"id": e.id, "input": e.input, "expected": e.output, "predicted": a, "parsed": p, "seed": s}
                | metrics.outcome(metric, v)
                for s in SEEDS
                for e, a, p, v in zip(task.test, answers, scored.parsed, scored.correct)
            ],
        )
    return store


def test_each_metric_gets_the_floor_it_makes_meaningful():
    """Classification: the majority label; open-ended: the example's own text echoed back, which scores
    where copying earns credit (here the context holds every answer) and 0 where it does not."""
    name, values, _ = floor.floor(open_ended_task("exact_match"), open_ended_task().test, SEEDS, 100, 0)
    assert (name, values["score"]) == (floor.ECHO, 0.0)
    held = open_ended_task("contains", context="Every Zephra kettle: " + "; ".join(a for _, a in QUESTIONS))
    name, values, predictions = floor.floor(held, held.test, SEEDS, 100, 0)
    assert (name, values["score"]) == (floor.ECHO, 1.0) and len(predictions) == len(SEEDS) * len(QUESTIONS)
    summary = [("q", "the kettle draws 2055 W and is made in Romania")]
    rouge = open_ended_task("rouge_l", [("The Zephra kettle draws 2055 W. It is made in Romania.", summary[0][1])])
    assert 0.5 < floor.floor(rouge, rouge.test, [0], 100, 0)[1]["score"] < 1  # the copy baseline of summaries
    routing = Task(
        "routing",
        Path("."),
        TaskSpec(name="routing", data=DataSpec(train="u.jsonl"), labels=LABELS, metric="accuracy"),
        tuple(Example(f"t{i}", "m", label) for i, label in enumerate(TEST)),
        tuple(Example(f"t{i}", "m", label) for i, label in enumerate(TEST)),
    )
    name, values, _ = floor.floor(routing, routing.test, SEEDS, 100, 0)
    assert (name, values["majority_label"], values["score"]) == (floor.MAJORITY, "billing", 0.6)
    built_in = [m for m in metrics.METRICS.in_order() if metrics.get(m).value.__module__ == "harness.metrics"]
    assert set(built_in) == set(floor.FLOORS)  # every built-in metric says which floor it has (plugins: the echo)


def test_open_ended_task_where_every_technique_scores_zero_gets_no_recommendation(tmp_path):
    """Issue 28, item 1: every technique scored 0.000 on product-catalogue and the report said "Use
    zero-shot: it has the highest score (0.000)". Before the fix an open-ended task had no floor row, so
    the same rows recommended zero-shot; now nothing is significantly above echoing the input."""
    task = open_ended_task()
    store = open_ended_run(
        tmp_path, task, {"zero-shot": ["I do not know."] * 40, "ia3": ["The kettle is made in China."] * 40}
    )
    rows, predictions = store.ordered_rows(), store.finished_predictions()
    assert {r["technique"]: r["score"] for r in rows} == {"zero-shot": 0.0, "ia3": 0.0, floor.ECHO: 0.0}

    pick = decision.recommend(rows, predictions)
    assert pick.technique is None
    assert pick.reason == (
        "no technique scores significantly above the task's floor, echoing the input (which scores 0.000)"
    )
    assert decision.floor_flags(rows, predictions)["ia3"] == [
        "not significantly different from echoing the input (which scores 0.000; "
        "difference +0.000 [+0.000, +0.000], Holm p = 1.00)"
    ]
    report = write_report([store]).read_text()
    assert "No recommendation: no technique scores significantly above the task's floor, echoing the input" in report
    assert "Use zero-shot" not in report
    assert (
        "Floor: echoing the input back as the answer scores 0.000. "
        "Not significantly different from it: zero-shot, ia3." in report
    )
    assert "Under `contains`, echoing the example's own text (its input, then its context) as the answer" in report


def test_a_technique_significantly_above_the_open_ended_floor_is_recommended(tmp_path):
    task = open_ended_task()
    right = [f"It draws {a}." for _, a in QUESTIONS]
    store = open_ended_run(tmp_path, task, {"zero-shot": ["I do not know."] * 40, "lora": right})
    rows, predictions = store.ordered_rows(), store.finished_predictions()
    pick = decision.recommend(rows, predictions)
    assert pick.technique == "lora"
    assert decision.versus_floor(rows, predictions)["lora"].relation == "above"
    assert "Significantly above it: lora." in write_report([store]).read_text()


def test_below_the_floor_is_worded_as_below(tmp_path):
    """Issue 28, item 8: a technique significantly below the majority floor was reported as "not
    significantly above" it; the sentence now follows the test: below, not different, or above."""
    good = ["billing"] * 34 + ["shipping"] * 2 + ["shipping"] * 10 + ["billing"] * 2 + ["technical"] * 12  # 0.93
    near = ["billing"] * 36 + ["billing"] * 12 + ["technical"] * 12  # 0.80: not collapsed, some flips
    store = classification_run(
        tmp_path,
        {"zero": (["shipping"] * 60, 0.001, 900), "few": (near, 0.002, 900), "full": (good, 0.01, 4000)},
    )
    rows, predictions = store.ordered_rows(), store.finished_predictions()
    verdicts = decision.versus_floor(rows, predictions)
    assert {name: v.relation for name, v in verdicts.items()} == {"zero": "below", "few": "above", "full": "above"}
    zero = decision.floor_flags(rows, predictions)["zero"][0]
    assert zero.startswith("significantly below always answering 'billing' (which scores 0.600; difference -0.400 [")
    report = write_report([store]).read_text()
    assert "- **zero** significantly below always answering 'billing'" in report
    assert "Significantly above it: few, full. Significantly below it: zero." in report


def test_data_size_advice_obeys_the_floor_rule_of_the_recommendation(tmp_path):
    """Issue 28, item 2: reports/study-example said "No recommendation: no technique beats always answering
    'billing'" and two lines later "With 456 training examples, use zero-shot". Before the fix the advice
    ranked every technique (the floor row too) by mean score alone and named one here."""
    near = ["shipping"] * 27 + ["billing"] * 9 + ["shipping"] * 12 + ["technical"] * 12  # 0.55
    store = classification_run(tmp_path, {"zero": (near, 0.001, 900), "lora": (["billing"] * 60, 0.002, 1200)})
    store.cells = [
        {"technique": "zero", "kind": "prompt", "split": "test", "status": "ok", "score": 0.55, "seed": 0},
        {"technique": floor.MAJORITY, "kind": floor.KIND, "split": "test", "status": "ok", "score": 0.6, "seed": 0},
    ] + [
        {"technique": "lora", "kind": "lora", "split": "test", "status": "ok", "score": score, "train_examples": n}
        for n, score in ((16, 0.45), (60, 0.6))
    ]
    rows, predictions = store.ordered_rows(), store.finished_predictions()
    assert decision.recommend(rows, predictions).technique is None
    advice = study_sections.data_size_advice(store)
    assert advice == (
        "With 60 training examples, no technique is advised: no technique scores significantly above the "
        "task's floor, always answering 'billing' (which scores 0.600)."
    )
    report = write_report([store]).read_text()
    assert advice in report and "use zero" not in report and "use majority" not in report


def test_data_size_advice_drops_a_smaller_size_at_or_below_the_floor(tmp_path):
    """At a size without stored predictions, a point whose mean is not above the floor's cannot be
    significantly above it: it is not advised, even where the technique clears the floor at full size."""
    store = RunStore(tmp_path, {"recipe": {"name": "s", "techniques": []}, "task": {"name": "t", "metric": "accuracy"}})
    store.rows = [
        make_row(floor.MAJORITY, floor.KIND, "ok", score=0.5, majority_label="yes"),
        make_row("lora", "lora", "ok", score=0.8, train_examples=100),
    ]
    store.cells = [
        {"technique": floor.MAJORITY, "kind": floor.KIND, "split": "test", "status": "ok", "score": 0.5},
    ] + [
        {"technique": "lora", "kind": "lora", "split": "test", "status": "ok", "score": s, "train_examples": n}
        for n, s in ((10, 0.4), (100, 0.8))
    ]
    assert study_sections.data_size_advice(store, not_above_floor=()) == (
        "With 100 training examples, use lora: mean test score 0.800 with 100 examples."
    )
    assert study_sections.data_size_advice(store, 50, not_above_floor=()) == (
        "With 50 training examples, no technique is advised: no technique scores significantly above the "
        "task's floor, always answering 'yes' (which scores 0.500)."
    )


@pytest.mark.parametrize("name", floor.NAMES)
def test_floor_names_are_reserved(name, write):
    from harness.config import load_recipe

    recipe = write("r.yaml", f"name: x\ntask: ticket-routing\ntechniques:\n  - {{name: {name}, kind: prompt}}\n")
    with pytest.raises(ValueError, match=f"the technique name '{name}' is reserved for the task's floor row"):
        load_recipe(recipe)


def test_a_run_on_an_open_ended_task_records_the_echo_floor_and_recommends_nothing_from_nothing(
    write, tiny_model_dir, tmp_path
):
    """End to end on the tiny model: the driver records the `echo-input` row of product-catalogue (scored
    like a technique, one prediction per seed and example), and an untrained model scoring 0.000 is not
    recommended. Before the fix the run had no floor row and the report said "Use zero: ... (0.000)"."""
    text = tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt, shots: 0}\n")
    run_dir, rows = run_rows(write, text.replace("task: ticket-routing", "task: product-catalogue"), tmp_path / "out")
    assert set(rows) == {"zero", floor.ECHO} and rows[floor.ECHO]["kind"] == floor.KIND
    assert rows[floor.ECHO]["score"] == 0.0 and rows[floor.ECHO]["n_eval"] == 12 and rows["zero"]["score"] == 0.0
    report = (run_dir / "REPORT.md").read_text()
    assert "No recommendation: no technique scores significantly above the task's floor, echoing the input" in report
