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
