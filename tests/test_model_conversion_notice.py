"""The first load of a GGUF model converts it (about 25 s for the default model): the driver does it before
its cells start, timed apart, so that no technique's wall time or peak memory includes it, and REPORT.md
says what was excluded; the converting process says so (a spinner on a terminal, else a line in the log)."""

import json
import shutil
import time

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import figures, models

DEFAULT = models.ALIASES["smollm2-135m-instruct"]
MESSAGE = "converting Fake-Model from GGUF (once; about 25 s)…"


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A file named like a GGUF model (its bytes are not one, so a conversion starts and then fails), and an
    empty cache."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "Fake-Model.Q4_1.gguf"
    path.write_bytes(b"not a GGUF file")
    return path


def test_a_gguf_is_pending_conversion_until_its_cache_is_built(fake_gguf, tmp_path):
    assert models.pending_conversion(str(fake_gguf)) == fake_gguf
    assert models.conversion_message(fake_gguf) == MESSAGE
    assert models.pending_conversion(str(tmp_path)) is None  # a model directory: nothing to convert
    built = models._gguf_cache(fake_gguf)
    built.mkdir(parents=True)
    (built / "config.json").write_text("{}")
    assert models.pending_conversion(str(fake_gguf)) is None


@pytest.mark.skipif(DEFAULT.gguf_path() is None, reason=f"needs the default model's wheel ({DEFAULT.install})")
def test_the_default_model_and_random_ones_wait_on_its_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert models.pending_conversion("smollm2-135m-instruct") == DEFAULT.gguf_path()
    assert models.pending_conversion("random:tiny-llama") == DEFAULT.gguf_path()  # the default model's tokenizer


def test_a_conversion_outside_a_terminal_prints_a_line_before_it_starts(fake_gguf, capfd):
    with pytest.raises(Exception):  # noqa: B017 — whatever transformers raises on a file that is no GGUF
        models._cached_gguf(fake_gguf)
    assert f"[model] {MESSAGE}" in capfd.readouterr().err
    assert not models._gguf_cache(fake_gguf).exists()


def test_a_gguf_that_cannot_be_converted_fails_the_run_before_any_cell(fake_gguf, write, tmp_path):
    recipe = tiny_recipe(fake_gguf, tmp_path / "out", "  - {name: zero, kind: prompt}\n")
    result = run_cli("run", write("r.yaml", recipe))
    assert result.exit_code == 2, result.output  # one clear error, not every cell failing the same way
    assert f"could not convert {fake_gguf} from GGUF" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_the_driver_converts_before_the_cells_and_the_report_says_it_was_excluded(
    fake_gguf, tiny_model_dir, write, tmp_path, monkeypatch
):
    def convert(gguf, target):  # a conversion the cells' processes cannot do (they run the real converter)
        time.sleep(0.3)
        shutil.copytree(tiny_model_dir, target)

    monkeypatch.setattr(models, "_convert_gguf", convert)  # in the driver's process only
    recipe = tiny_recipe(fake_gguf, tmp_path / "out", "  - {name: zero, kind: prompt}\n")
    result = run_cli("run", write("r.yaml", recipe))
    assert result.exit_code == 0, result.output  # the cell found the model converted: it did not convert
    assert "prepared before the cells, in no technique's figures: converting Fake-Model from GGUF" in result.output
    run_dir = only_run_dir(tmp_path / "out")
    (step,) = json.loads((run_dir / "results.json").read_text())["meta"]["prepared"]
    assert step["model"] == str(fake_gguf) and step["step"] == "converting Fake-Model from GGUF"
    assert step["seconds"] >= 0.3
    (log,) = (run_dir / "logs").glob("*.log")
    assert "converting" not in log.read_text()
    report = " ".join((run_dir / "REPORT.md").read_text().split())
    took = figures.fmt_seconds(step["seconds"])
    assert f"**excluded, one-time preparation**: converting Fake-Model from GGUF ({took}), done before" in report
