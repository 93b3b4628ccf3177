import json

import pytest

from harness import results, rows


def test_rows_always_carry_every_field():
    row = rows.make_row("a", "prompt", "ok", score=0.5, score_accuracy=0.5)
    assert set(rows.CORE) <= set(row) and row["train_seconds"] is None and row["score_accuracy"] == 0.5
    with pytest.raises(ValueError):
        rows.make_row("a", "prompt", "done")


def test_record_replaces_an_earlier_attempt_and_persists(tmp_path):
    store = results.RunStore(tmp_path, {"recipe": {"techniques": [{"name": "a"}, {"name": "b"}]}})
    store.record(rows.make_row("b", "prompt", "failed", error="boom"))
    store.record(rows.make_row("a", "prompt", "ok"), [{"id": 1, "correct": True}])
    store.record(rows.make_row("b", "prompt", "ok"))
    reopened = results.RunStore.open(tmp_path)
    assert [r["technique"] for r in reopened.ordered_rows()] == ["a", "b"]
    assert reopened.finished("b") and reopened.predictions("a") == [{"id": 1, "correct": True}]
    assert not list(tmp_path.glob(".results.json.*"))  # no temporary files left behind


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.json"
    results.write_atomic(path, json.dumps({"ok": 1}))

    with pytest.raises(TypeError):
        results.write_atomic(path, 12345)  # fails mid-write, after the temporary file was opened
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_results_of_version_1_load_and_verdicts_are_never_stored(tmp_path):
    old = {"meta": {}, "rows": [dict(rows.make_row("a", "prompt", "ok", score=0.5).as_dict(), vs_best="best")]}
    (tmp_path / "results.json").write_text(json.dumps(old))  # no version: written before rows were typed
    store = results.RunStore.open(tmp_path)
    assert store.rows[0].score == 0.5 and "vs_best" not in store.rows[0] and store.cells == []
    store.save()
    assert json.loads((tmp_path / "results.json").read_text())["version"] == results.VERSION
    with pytest.raises(ValueError, match="newer"):
        results.upgrade({"version": results.VERSION + 1, "meta": {}, "rows": []})


def test_a_local_latency_and_an_api_latency_are_labelled_apart():
    from harness import figures

    assert "batch size 1" in figures.get("latency_p50_seconds").label
    assert "batch size 1" in figures.get("latency_p50_seconds", "lora").label
    assert "HTTP request" in figures.get("latency_p50_seconds", "api").label


def strict_json(text: str):
    """JSON as a strict reader takes it: NaN and Infinity are no JSON numbers."""

    def refuse(constant):
        raise ValueError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_figure_that_is_no_number_is_stored_as_null(tmp_path):
    """results.json and the predictions stay valid JSON when a figure is NaN or infinite (an endpoint's
    garbage usage, a broken measurement): such a figure is stored as null (before: NaN, Infinity)."""
    import numpy as np

    store = results.RunStore(tmp_path, {"recipe": {"techniques": [{"name": "a"}]}, "price": float("inf")})
    row = rows.make_row("a", "api", "ok", score=float("nan"), cost_usd=float("inf"), api_input_tokens=12)
    row["latency_p50_seconds"] = np.float32("nan")
    store.record(row, [{"id": 1, "value": float("-inf"), "scores": [0.5, float("nan")]}])
    stored = strict_json(store.results_path.read_text())
    (written,) = stored["rows"]
    assert written["score"] is None and written["cost_usd"] is None and written["latency_p50_seconds"] is None
    assert written["api_input_tokens"] == 12 and stored["meta"]["price"] is None
    assert strict_json(store.predictions_path("a").read_text()) == {"id": 1, "value": None, "scores": [0.5, None]}
    assert results.to_json({"n": np.float64(0.25), "ok": True}) == '{"n": 0.25, "ok": true}'
