"""The first load of a GGUF model converts it (about 25 s for the default model): the driver says so before
its cells start, and the converting process says so too (a spinner on a terminal, else a line in the cell's
log, which the driver's display shows beside the running cell)."""

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import models

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


def test_a_run_on_an_unconverted_gguf_says_so_on_the_driver_and_in_the_cell_log(fake_gguf, write, tmp_path):
    recipe = tiny_recipe(fake_gguf, tmp_path / "out", "  - {name: zero, kind: prompt}\n")
    result = run_cli("run", write("r.yaml", recipe))
    assert result.exit_code == 1, result.output  # the fake file fails to convert: a failed row, not a crash
    assert f"first use of {fake_gguf}: the first cell is {MESSAGE}" in result.output
    (log,) = (only_run_dir(tmp_path / "out") / "logs").glob("*.log")
    assert f"[model] {MESSAGE}" in log.read_text()
