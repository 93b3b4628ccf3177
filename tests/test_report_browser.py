"""REPORT.html in a real browser: the demo's committed page (reports/demo-example) opened in headless
Chromium through selenium, from file:// and from `harness view`, and used as a reader uses it: it renders
without console errors, sorts on a header click, filters the example browser, shows a plot's value on
hover, lists a confusion-matrix cell's examples. One browser for the module (its start is the cost).

Skipped where selenium (the dev extra), chromium or chromedriver is missing; .ci/run installs Debian's
`chromium` and `chromium-driver` first. `pytest -m browser` runs only these."""

import json
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from screenshot_report import (  # noqa: E402 — bench/ is not a package
    chromium_paths,
    headless_chromium,
    show_a_right_b_wrong,
    task_section,
)

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
if chromium_paths() is None:
    pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver)", allow_module_level=True)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402

pytestmark = pytest.mark.browser
DEMO = REPO / "reports" / "demo-example"
TASK, A, B = "ticket-routing", "full", "lora"


@pytest.fixture(scope="module")
def driver():
    driver = headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def page(driver):
    """The demo's page freshly loaded from disk (so no test sees another's sorting or filters), its
    console read after the test: an error there (a script's exception, a failed load) fails it."""
    driver.get((DEMO / "REPORT.html").as_uri())
    driver.get_log("browser")  # start from this load's console
    yield driver
    assert severe(driver) == []


def severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def results(task: str) -> list[dict]:
    return json.loads((DEMO / task / "results.json").read_text())["rows"]


def techniques(task: str) -> list[str]:
    """Every technique of the task's results.json, sorted (the report orders its rows its own way)."""
    return sorted(row["technique"] for row in results(task))


def predictions(task: str, technique: str) -> list[dict]:
    lines = (DEMO / task / "predictions" / f"{technique}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def column(table, header: str) -> list[str]:
    """One column's cells as rendered, top to bottom (the header's position picks it)."""
    headers = [th.text.rstrip(" ▲▼") for th in table.find_elements("css selector", "thead th")]
    index = headers.index(header) + 1
    return [td.text for td in table.find_elements("css selector", f"tbody tr td:nth-child({index})")]


def shown_examples(section) -> tuple[str, list[str]]:
    """The browser's count line and the ids of the examples it draws."""
    count = section.find_element("css selector", "div.browser > div.muted").text
    metas = section.find_elements("css selector", "div.browser div.example > div.meta")
    return count, [meta.text.split(" · ")[0] for meta in metas]


def test_the_page_renders_a_headline_row_per_technique_for_each_task(page):
    for task in ("product-catalogue", TASK):
        table = task_section(page, task).find_element("css selector", "table.headline")
        assert sorted(column(table, "technique")) == techniques(task)
        assert task_section(page, task).find_elements("css selector", "svg.plot g.point")


def test_a_header_click_sorts_the_rows_by_that_column_and_a_second_click_reverses_them(page):
    table = task_section(page, TASK).find_element("css selector", "table.headline")
    scores = {row["technique"]: row["score"] for row in results(TASK)}
    header = next(th for th in table.find_elements("css selector", "thead th") if th.text == "score [95% CI]")
    for reverse in (False, True):
        header.click()
        order = [scores[name] for name in column(table, "technique")]
        scored = [s for s in order if s is not None]
        # missing scores (a skipped technique's) last, whichever the direction
        assert order == sorted(scored, reverse=reverse) + [None] * (len(order) - len(scored))
    assert header.get_attribute("aria-sort") == "descending"


def test_a_right_b_wrong_shows_exactly_the_examples_the_predictions_files_say(page):
    section = task_section(page, TASK)
    show_a_right_b_wrong(section, A, B)
    b_right = {(p["id"], p["seed"]): p["correct"] for p in predictions(TASK, B)}
    expected = [p["id"] for p in predictions(TASK, A) if p["correct"] and b_right[(p["id"], p["seed"])] is False]
    count, shown = shown_examples(section)
    assert 0 < len(expected) <= 50 and shown == expected  # one page holds them all
    assert count == f"{len(expected)} of {len(predictions(TASK, A))} examples"


def test_hovering_a_plot_point_enlarges_it_and_its_tooltip_holds_the_score(page):
    """Chromium draws an SVG <title> as a native tooltip, which webdriver cannot read: the hover itself is
    checked by the point's :hover style, the value by the <title> of the hovered point."""
    plot = task_section(page, TASK).find_element("css selector", f"svg.plot[aria-label='{TASK}: score vs memory']")
    point = plot.find_element("css selector", "g.point circle")
    assert point.value_of_css_property("r") == "5px"
    ActionChains(page).move_to_element(point).perform()
    assert point.value_of_css_property("r") == "7px"
    tip = point.find_element("xpath", "..").find_element("css selector", "title").get_attribute("textContent")
    name = tip.split("\n")[0]
    assert f"score {next(r['score'] for r in results(TASK) if r['technique'] == name):.3f} [" in tip


def test_a_confusion_matrix_cell_lists_its_examples(page):
    section = task_section(page, TASK)
    cell = section.find_element(
        "css selector", f"button.cm[data-tech='{A}'][data-expected='returns'][data-parsed='billing']"
    )
    in_cell = [p["id"] for p in predictions(TASK, A) if p["expected"] == "returns" and p["parsed"] == "billing"]
    assert cell.text == str(len(in_cell)) and in_cell
    cell.click()
    assert shown_examples(section)[1] == in_cell
    assert section.find_element("css selector", "div.browser .chip").text.startswith(f"{A}: expected returns")


def test_harness_view_serves_a_page_the_browser_renders(driver):
    from harness.report.serve import serve

    server, url = serve([DEMO])  # the demo has its REPORT.html: nothing is written
    try:
        driver.get(url.removesuffix("run1/REPORT.html"))
        driver.find_element("link text", str(DEMO)).click()
        assert driver.current_url == url
        table = task_section(driver, TASK).find_element("css selector", "table.headline")
        assert sorted(column(table, "technique")) == techniques(TASK)
        assert severe(driver) == []
    finally:
        server.shutdown()
        server.server_close()
