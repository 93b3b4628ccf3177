"""The majority-label floor of a classification task."""

from collections import Counter
from pathlib import Path

import pytest

from harness.analysis import floor as baseline
from harness.rows import make_row
from harness.tasks import DataSpec, Example, Task, TaskSpec, load_task


def labelled(labels: list[str], outputs: str, prefix: str) -> tuple[Example, ...]:
    """Examples whose outputs are the characters of `outputs` mapped to labels by first letter."""
    by_letter = {label[0]: label for label in labels}
    return tuple(Example(f"{prefix}{i}", f"message {i}", by_letter[c]) for i, c in enumerate(outputs))


def toy_task(train: str, test: str, metric: str = "accuracy") -> Task:
    labels = ["billing", "shipping", "returns"]
    spec = TaskSpec(name="toy", data=DataSpec(train="unused.jsonl"), labels=labels, metric=metric)
    return Task("toy", Path("."), spec, labelled(labels, train, "tr"), labelled(labels, test, "te"))


def test_ticket_routing_floor_is_scored_like_a_technique():
    task = load_task("ticket-routing")
    shares = baseline.label_shares(task)
    assert list(shares) == task.labels and sum(shares.values()) == pytest.approx(1.0)
    label = baseline.majority_label(task)
    assert shares[label] == max(shares.values())
    assert not baseline.is_imbalanced(task)  # the bundled task is close to balanced

    values, predictions = baseline.majority(task, task.test, seeds=[0, 1, 2], bootstrap_samples=500, seed=0)
    expected_score = sum(e.output == label for e in task.test) / len(task.test)
    assert values["score"] == pytest.approx(expected_score) == values["score_accuracy"]
    assert values["ci_low"] <= values["score"] <= values["ci_high"]
    assert values["majority_label"] == label and values["chance_score"] == pytest.approx(1 / 6)
    assert values["n_eval"] == len(task.test) and values["invalid_rate"] == 0.0
    assert values["score_macro_f1"] < values["score"]
    assert len(predictions) == 3 * len(task.test)
    assert Counter(p["seed"] for p in predictions) == {0: len(task.test), 1: len(task.test), 2: len(task.test)}
    first = predictions[0]
    assert set(first) == {"id", "input", "expected", "predicted", "parsed", "correct", "seed"}
    assert first["predicted"] == first["parsed"] == label
    row = make_row(baseline.NAME, baseline.KIND, "ok", **values)  # the pipeline stores it so
    assert row["technique"] == "majority" and row["kind"] == "baseline"


def test_imbalanced_task_majority_and_its_macro_f1():
    task = toy_task(train="bbbbbbbbsr", test="bbbbbbssrr")  # 80% billing in train
    assert baseline.label_shares(task) == pytest.approx({"billing": 0.8, "shipping": 0.1, "returns": 0.1})
    assert baseline.is_imbalanced(task) and baseline.majority_label(task) == "billing"
    values, predictions = baseline.majority(task, task.test, seeds=[7], bootstrap_samples=200, seed=0)
    assert values["score"] == pytest.approx(0.6)
    assert values["score_macro_f1"] == pytest.approx(0.25)  # F1(billing) = 0.75, the other two 0
    assert [p["correct"] for p in predictions] == [True] * 6 + [False] * 4
    assert {p["seed"] for p in predictions} == {7}

    f1_values, _ = baseline.majority(toy_task("bbbbbbbbsr", "bbbbbbssrr", "macro_f1"), task.test, [0], 200, 0)
    assert f1_values["metric"] == "macro_f1" and f1_values["score"] == pytest.approx(0.25)


def test_balance_rule_and_ties():
    assert not baseline.is_imbalanced(toy_task("bbbsssrrr", "b"))
    assert not baseline.is_imbalanced(toy_task("bbbsssrr", "b"))  # 3/2 = 1.5: not above the ratio
    assert baseline.is_imbalanced(toy_task("bbbbsssrr", "b"))
    assert baseline.is_imbalanced(toy_task("bbbsss", "b"))  # 'returns' never appears in train
    assert baseline.majority_label(toy_task("ssbb", "b")) == "billing"  # tie: the task's label order


def test_generation_tasks_have_no_floor():
    task = load_task("product-catalogue")
    with pytest.raises(ValueError, match="classification"):
        baseline.majority(task, task.test, [0], 100, 0)
