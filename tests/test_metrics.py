import numpy as np
import pytest

from harness import metrics

LABELS = ["billing", "shipping", "technical"]


def test_normalize_and_parse_label():
    assert metrics.normalize('  "Paris."  ') == "paris"
    assert metrics.parse_label("Billing", LABELS) == "billing"
    assert metrics.parse_label("Team: shipping, not billing", LABELS) == "shipping"  # first one named
    assert metrics.parse_label("\n\ntechnical issue\nbilling", LABELS) == "technical"  # first line only
    assert metrics.parse_label("rebilling", LABELS) == metrics.INVALID  # whole words only
    assert metrics.parse_label("", LABELS) == metrics.INVALID
    nested = ["account", "account closure"]  # the longest label at the first position, whatever the list order
    assert metrics.parse_label("Account closure, please", nested) == "account closure"
    assert metrics.parse_label("account", nested) == "account"


def test_classification_scores_match_hand_computation():
    expected = ["billing", "billing", "shipping", "technical"]
    answers = ["billing", "shipping", "Shipping.", "I am not sure"]
    scored = metrics.score("accuracy", expected, answers, LABELS)
    assert scored.parsed == ["billing", "shipping", "shipping", metrics.INVALID]
    assert scored.metrics["accuracy"] == pytest.approx(0.5)
    # per-label F1: billing P=1 R=.5 -> 2/3; shipping P=.5 R=1 -> 2/3; technical 0 -> macro 4/9
    assert scored.metrics["macro_f1"] == pytest.approx(4 / 9)
    assert scored.invalid_rate == pytest.approx(0.25)
    assert scored.correct.tolist() == [1, 0, 1, 0]


def test_generation_scores():
    scored = metrics.score("contains", ["Paris", "4"], ["paris\nmore text", "The answer is 4"], None)
    assert set(scored.metrics) == {"exact_match", "contains", "rouge_l", "chrf"}  # every free-text metric
    assert (scored.metrics["exact_match"], scored.metrics["contains"]) == (0.5, 1.0)
    assert scored.correct.tolist() == [1.0, 1.0]


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    correct = np.array([1.0] * 60 + [0.0] * 40)
    stat = lambda idx: float(correct[idx].mean())  # noqa: E731
    low, high = metrics.bootstrap_ci(stat, len(correct), 2000, seed=0)
    assert low < 0.6 < high
    assert 0.08 < high - low < 0.24  # ~ +-1.96 * sqrt(.6*.4/100) = +-0.096
    assert (low, high) == metrics.bootstrap_ci(stat, len(correct), 2000, seed=0)


def test_macro_f1_ci_is_recomputed_per_resample():
    expected = ["billing", "shipping"] * 20
    scored = metrics.score("macro_f1", expected, ["billing"] * 40, LABELS)
    low, high = metrics.metric_ci("macro_f1", scored, expected, LABELS, 500, seed=1)
    assert low <= scored.metrics["macro_f1"] <= high
    assert high < 0.5  # macro-F1 of a one-label predictor stays low in every resample


@pytest.mark.parametrize("name", ["rouge_l", "chrf"])
def test_continuous_metrics_on_known_strings(name):
    reference = "the billing team will refund the charge within five days"
    expected = [reference, reference, reference]
    answers = [reference, "xyzzy qwv", "the billing team will look into it"]
    scored = metrics.score(name, expected, answers, None)
    identical, disjoint, partial = scored.correct.tolist()
    assert identical == pytest.approx(1.0)
    assert disjoint == pytest.approx(0.0, abs=0.05)
    assert 0.2 < partial < 0.8
    assert scored.metrics[name] == pytest.approx((identical + disjoint + partial) / 3)
    assert not metrics.get(name).binary and not metrics.is_binary(name)
    low, high = metrics.metric_ci(name, scored, expected, None, 200, seed=0)
    assert 0.0 <= low <= scored.metrics[name] <= high <= 1.0


def test_rouge_l_is_the_lcs_f_measure():
    # LCS of "the cat sat on the mat" and "the cat lay on a rug" is "the cat on" (3 of 6 words each way)
    assert metrics.score("rouge_l", ["the cat sat on the mat"], ["the cat lay on a rug"], None).correct[0] == 0.5


def test_predictions_store_a_value_under_a_continuous_metric():
    assert metrics.outcome("exact_match", 1.0) == {"correct": True}
    assert metrics.outcome("rouge_l", 0.25) == {"value": 0.25, "correct": None}


TASK = "name: t\ndata: {train: d.jsonl}\nfields: {input: q, output: a}\n"


@pytest.mark.parametrize(
    "extra, error",
    [
        ("metric: rouge\n", r"task\.yaml:4: metric: unknown metric 'rouge' \(did you mean 'rouge_l'\?\); known: "),
        ("metric: macro_f1\n", r"task\.yaml:4: metric: .*metric 'macro_f1' needs a `labels:` list"),
    ],
)
def test_task_metric_is_checked_against_the_registry(write, extra, error):
    from harness.tasks import load_task
    from harness.yamlconfig import ConfigError

    write("t/d.jsonl", "".join(f'{{"q": "q{i}", "a": "a{i}"}}\n' for i in range(4)))
    folder = write("t/task.yaml", TASK + extra).parent
    with pytest.raises(ConfigError, match=error):
        load_task(str(folder))
    write("t/task.yaml", TASK + "metric: chrf\n")
    assert load_task(str(folder)).spec.metric == "chrf"


# --- the report's paired test follows the metric -------------------------------------------------


def stored(values, continuous: bool) -> list[dict]:
    """Predictions as heldout.evaluate stores them: `value` under a continuous metric, else `correct`."""
    return [
        {
            "id": f"e{i}",
            "seed": 0,
            "input": f"q{i}",
            "expected": "the reply",
            "predicted": f"answer {i}",
            "parsed": f"answer {i}",
            **({"value": float(v), "correct": None} if continuous else {"correct": bool(v)}),
        }
        for i, v in enumerate(values)
    ]


def versus_best(metric: str, a, b):
    from harness.analysis import decision
    from harness.rows import make_row

    continuous = not metrics.is_binary(metric)
    rows = [make_row(name, "prompt", "ok", metric=metric, score=float(np.mean(v))) for name, v in (("a", a), ("b", b))]
    return decision.paired_vs_best(rows, {"a": stored(a, continuous), "b": stored(b, continuous)})["b"]


def test_a_continuous_metric_is_compared_on_its_values_with_the_interval_s_own_test():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 1.0, 40)
    b = np.clip(a - rng.normal(0.08, 0.15, 40), 0, 1)
    v = versus_best("rouge_l", a, b)
    assert v.diff == pytest.approx(b.mean() - a.mean())
    assert v.ci_low < v.diff < v.ci_high < 0  # the paired bootstrap CI, as for a binary metric
    assert v.p_value < 0.05  # the same bootstrap's p: the interval excludes 0, so the test rejects


def test_binary_and_continuous_metrics_share_the_bootstrap_test():
    from harness.analysis import stats

    a = [1] * 30 + [0] * 10
    b = [1] * 20 + [0] * 20
    # the same 0/1 values under either metric: one mechanism, so one answer
    assert versus_best("exact_match", a, b).p_value == versus_best("chrf", a, b).p_value < 0.05
    # McNemar and Wilcoxon remain for `harness compare`/`check` (one technique's two runs)
    assert stats.mcnemar_p(b, a) != pytest.approx(stats.wilcoxon_p(b, a))
    assert stats.wilcoxon_p(a, a) == 1.0  # every pair tied


def test_wrong_answers_under_a_continuous_metric_are_the_lowest_scoring(tmp_path):
    from harness.report.markdown import wrong_answers_section
    from harness.results import RunStore
    from harness.rows import make_row

    store = RunStore(tmp_path, {"recipe": {"name": "r"}, "task": {"name": "t", "metric": "rouge_l"}})
    store.record(make_row("zero", "prompt", "ok", metric="rouge_l", score=0.5), stored([0.9, 0.1, 1.0, 0.4], True))
    section = wrong_answers_section(store, store.ordered_rows(), 2)
    assert "**t / zero** (lowest rouge_l first)" in section and "| input | expected | answer | rouge_l |" in section
    assert section.index("answer 1") < section.index("answer 3") and "answer 0" not in section  # 0.1, 0.4


def test_embedding_similarity_ranks_a_paraphrase_above_an_unrelated_answer():
    from harness import metrics

    similarity = metrics.get("embedding_similarity").value
    expected = "Our billing team will refund the duplicate charge within 3 business days."
    assert similarity(expected, expected, None) == pytest.approx(1.0, abs=1e-4)
    paraphrase = similarity(
        expected, "The billing team is going to refund the double charge in three working days.", None
    )
    unrelated = similarity(expected, "The TrailMate backpack weighs 1.2 kg.", None)
    assert 0 <= unrelated < paraphrase < 1
    # costly: scored only when a task names it, never as a secondary figure
    scored = metrics.score("rouge_l", [expected], [expected], None)
    assert "embedding_similarity" not in scored.metrics
    assert metrics.score("embedding_similarity", [expected], [expected], None).metrics["embedding_similarity"] > 0.99
