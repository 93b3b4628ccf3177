"""A seeded few of bench/probe_hardening.py's malformed task folders and path escapes, so that a regression
shows here: each ends in a clear error or a meaningful acceptance, never a traceback, an escape or garbage
accepted. (The whole probe, with its kill and endpoint families, is run by hand: docs/trust.md.)"""

import random
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from probe_hardening import paths_family, tasks_family  # noqa: E402 — bench/ is not a package

FINE = {"clear error", "accepted"}


@pytest.mark.parametrize("family, draw, limit", [(tasks_family, "tasks", 12), (paths_family, "paths", 4)])
def test_a_seeded_sample_of_the_probe_finds_no_defect(family, draw, limit):
    import datasets

    # as in a fresh `harness` process (training in this one may have turned them off): a dataset's progress
    # bar before a data error's `error:` line made it an unclear error
    datasets.enable_progress_bars()
    cases = family(random.Random(f"ci/{draw}"), limit=limit)
    assert len(cases) == limit
    defects = [f"{c.outcome}: {c.name}: {c.detail}" for c in cases if c.outcome not in FINE]
    assert not defects, "\n".join(defects)
