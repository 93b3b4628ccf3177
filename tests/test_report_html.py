"""REPORT.html (harness/report/html/): one file that fetches nothing, a sortable headline row per technique,
the example browser's data equal to the predictions files, every text from the run escaped; REPORT.md's
headline table first; `harness view` serves the page on loopback."""

import re
from html.parser import HTMLParser

from conftest import run_cli

from harness.report.html import embedded_json, write_stores_html
from harness.report.html.svg import tradeoff_svg
from harness.results import RunStore, open_runs
from harness.rows import make_row

HOSTILE = "</script><img src=x onerror=alert(1)>"


def stored_run(folder, task="t") -> RunStore:
    """Two techniques on a two-label task, one of whose inputs tries to break out of the page's script."""
    meta = {
        "recipe": {"name": "r", "model": {"id": "m"}, "techniques": [{"name": "a"}, {"name": "b"}]},
        "task": {"name": task, "metric": "accuracy", "labels": ["yes", "no"]},
        "seed": 0,
    }
    store = RunStore(folder, meta)
    for name, answers, memory in (("a", ["yes", "no", "no"], 2**30), ("b", ["yes", "yes", "yes"], 2**29)):
        row = make_row(name, "prompt", "ok", metric="accuracy", score=0.5, ci_low=0.2, ci_high=0.8, n_eval=3)
        row.update(peak_memory_bytes=memory, cost_usd=0.01 if name == "a" else 0.02, eval_peak_memory_bytes=memory)
        inputs = [HOSTILE, "plain & simple", "third"]
        expected = ["yes", "no", "yes"]
        store.record(
            row,
            [
                {
                    "id": f"e{i}",
                    "input": inputs[i],
                    "expected": expected[i],
                    "predicted": answers[i],
                    "parsed": answers[i],
                    "correct": answers[i] == expected[i],
                    "seed": 0,
                }
                for i in range(3)
            ],
        )
    return store


class Tags(HTMLParser):
    """Every start tag with its attributes, and the headline table's body rows."""

    def __init__(self):
        super().__init__()
        self.tags, self.headline_rows, self._in = [], 0, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._in = "headline" in (dict(attrs).get("class") or "")
        if tag == "tr" and self._in and self.tags[-2][0] != "thead":
            self.headline_rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = None


def test_the_page_stands_alone_with_a_headline_row_per_technique_and_the_predictions_embedded(tmp_path):
    store = stored_run(tmp_path)
    page = write_stores_html([store], tmp_path).read_text()
    tags = Tags()
    tags.feed(page)
    # one file: no script, style, image or link fetched from anywhere
    assert not re.search(r"https?:|//[a-z]", page, re.I)
    assert all("src" not in attrs or attrs["src"].startswith("data:") for _, attrs in tags.tags)
    assert not any(tag == "link" for tag, _ in tags.tags)
    assert tags.headline_rows == 2
    data = embedded_json(page, "examples-0")
    assert data["predictions"] == {name: store.predictions(name) for name in ("a", "b")}
    assert data["techniques"] == ["a", "b"]


def test_a_hostile_task_text_stays_text(tmp_path):
    """A task's input with `</script><img onerror=...>`, a task name with markup and an error text with a
    markdown image from elsewhere: the embedded JSON escapes '<' (\\u003c), the HTML escapes the name,
    the image becomes its alt text; no such element reaches the page, nothing is fetched."""
    store = stored_run(tmp_path, task="<b>t</b>")
    pixel = "![seen](https://tracker.example/pixel.png) <script>alert(1)</script>"
    store.record(make_row("c", "prompt", "failed", error=pixel))  # an error text is shown as markdown
    page = write_stores_html([store], tmp_path).read_text()
    assert "<img src=x" not in page and "</script><img" not in page and "<b>t</b>" not in page
    assert "tracker.example" not in page and "<script>alert" not in page and "[seen]" in page
    assert "&lt;b&gt;t&lt;/b&gt;" in page
    assert embedded_json(page, "examples-0")["predictions"]["a"][0]["input"] == HOSTILE


def test_the_trade_off_plot_shows_each_value_on_hover(tmp_path):
    rows = stored_run(tmp_path).ordered_rows()
    plot = tradeoff_svg(rows, "memory", "t: score vs memory")
    titles = re.findall(r"<title>(.*?)</title>", plot, re.S)
    assert any(t.startswith("a\nscore 0.500 [0.200, 0.800]") for t in titles)
    assert any("Pareto front" in t for t in titles)


def test_report_writes_the_page_and_a_headline_first_markdown(tmp_path):
    stored_run(tmp_path)
    assert run_cli("report", tmp_path).exit_code == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert (tmp_path / "REPORT.html").is_file() and "[REPORT.html](REPORT.html)" in text
    headline, full = text.index("| technique | score [95% CI]"), text.index("<details><summary>Every figure")
    assert headline < full and "| technique | kind | status |" in text[full:]
    header = text[headline:].splitlines()[0]
    assert header.count("|") - 1 <= 10


def test_the_committed_demo_page_embeds_its_predictions_files():
    """reports/demo-example/REPORT.html (re-rendered with the examples): one browser per task, each holding
    exactly that task's predictions files."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "reports" / "demo-example"
    page = (folder / "REPORT.html").read_text()
    for index, store in enumerate(open_runs(folder)):
        data = embedded_json(page, f"examples-{index}")
        assert data["task"] == store.meta["task"]["name"]
        assert data["predictions"] == store.finished_predictions()


def fetch(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_view_serves_the_page_on_loopback_writing_it_first(tmp_path):
    """One run without REPORT.html: `serve` writes it, serves it on 127.0.0.1, and nothing outside the run
    folders (an unknown path, '..') is served."""
    from harness.report.serve import serve

    store = stored_run(tmp_path / "run")
    (tmp_path / "secret.txt").write_text("not yours")
    (store.run_dir / "linked.txt").symlink_to(tmp_path / "secret.txt")
    server, url = serve([store.run_dir])
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/run1/REPORT.html")
        status, page = fetch(url)
        assert status == 200 and 'class="sortable headline"' in page
        assert (store.run_dir / "REPORT.html").is_file()
        base = url.removesuffix("run1/REPORT.html")
        assert fetch(base + "run1/../secret.txt")[0] == 404 and fetch(base + "elsewhere/x")[0] == 404
        assert fetch(base + "run1/linked.txt")[0] == 404
        assert fetch(base + "favicon.ico")[0] == 204  # a browser's request for it logs no error
        assert fetch(base)[1].count('href="run1/REPORT.html"') == 1
    finally:
        server.shutdown()
        server.server_close()


def test_view_of_two_runs_links_both_and_shows_the_compare_deltas(tmp_path):
    from harness.report.serve import serve

    first, second = stored_run(tmp_path / "a"), stored_run(tmp_path / "b")
    server, url = serve([first.run_dir, second.run_dir])
    try:
        status, index = fetch(url)
        assert status == 200 and 'href="run1/REPORT.html"' in index and 'href="run2/REPORT.html"' in index
        assert "B - A" in index and "peak_memory_bytes" in index
        assert fetch(url + "run2/REPORT.html")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_view_command_prints_the_url(tmp_path, monkeypatch):
    """`harness view RUN --no-browser` prints the loopback URL (the wait is cut short here)."""
    stored_run(tmp_path)
    monkeypatch.setattr("harness.cli.wait_for_ctrl_c", lambda: None)
    result = run_cli("view", tmp_path, "--no-browser")
    assert result.exit_code == 0 and "serving http://127.0.0.1:" in result.output


def test_the_browser_shows_exactly_the_examples_a_got_right_and_b_wrong(tmp_path):
    """The page's script, run in node against a stand-in DOM (tests/js/browser_smoke.js) on the demo's
    ticket-routing data: "A right, B wrong" with A = full, B = lora lists exactly the examples whose
    predictions files say so, and so does a confusion-matrix cell's click. Skipped without node."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        import pytest

        pytest.skip("no node to run the page's script")
    root = Path(__file__).resolve().parent.parent
    store = next(s for s in open_runs(root / "reports" / "demo-example") if s.meta["task"]["name"] == "ticket-routing")
    predictions = store.finished_predictions()
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"techniques": list(predictions), "predictions": predictions, "labels": ["x"]}))
    script = root / "harness" / "report" / "html" / "assets" / "report.js"
    smoke = root / "tests" / "js" / "browser_smoke.js"
    command = [node, smoke, script, data, "full", "lora", "returns", "billing"]
    shown = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    lora = {(p["id"], p["seed"]): p["correct"] for p in predictions["lora"]}
    expected = [p["id"] for p in predictions["full"] if p["correct"] and lora[(p["id"], p["seed"])] is False]
    assert 0 < len(expected) <= 50 and shown["shown"] == expected
    assert shown["count"] == f"{len(expected)} of {len(predictions['full'])} examples"
    # full's confusion-matrix cell (expected returns, answered billing) lists exactly those examples
    in_cell = [p["id"] for p in predictions["full"] if p["expected"] == "returns" and p["parsed"] == "billing"]
    assert in_cell and shown["cell"]["shown"] == in_cell


def test_cost_at_volume_and_training_plots_show_break_evens_and_points_on_hover(tmp_path):
    from harness.report.html.svg import cost_at_volume_svg, training_svgs

    rows = [dict(r) for r in stored_run(tmp_path).ordered_rows()]
    rows[0].update(train_cost_usd=0.0, serving_usd_per_request=1e-3)  # a: nothing to train, dear per request
    rows[1].update(
        train_cost_usd=5.0,
        serving_usd_per_request=1e-4,
        train_curve=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
    )
    plot = cost_at_volume_svg(rows, "t: cost at volume", workload=1e6)
    assert "b becomes cheaper than a after about 5.6k requests" in plot and "workload: 1M requests" in plot
    (curve,) = training_svgs(rows, "t")
    assert "b, step 2: training loss 1.5" in curve


def test_sorting_reads_each_cells_figure_from_its_text():
    """The headline's cells without a stored figure sort by the number their text shows, in its unit
    (report.js cellValue, run in node); skipped without node."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the page's script")
    script = Path(__file__).resolve().parent.parent / "harness" / "report" / "html" / "assets" / "report.js"
    texts = [
        "834 MiB",
        "1.15 GiB",
        "$11.96",
        "$3.12",
        "0.97s / 1.13s",
        "150ms",
        "best",
        "▼ −0.575 [−0.688, −0.463]",
        "–",
    ]
    code = (
        f"const m = require({json.dumps(str(script))});"
        f"const cells = {json.dumps(texts)}.map(t => ({{dataset: {{}}, textContent: t}}));"
        "console.log(JSON.stringify(cells.map(cell => m.cellValue(cell, true))))"
    )
    values = json.loads(subprocess.run([node, "-e", code], check=True, capture_output=True, text=True).stdout)
    assert values == [834 * 2**20, 1.15 * 2**30, 11.96, 3.12, 0.97, 0.15, 0, -0.575, None]


def test_each_section_renders_once_for_both_reports(tmp_path):
    """REPORT.md and REPORT.html show the same section texts, each rendered once (a section that draws a
    plot or runs a test does it once; before, the page rendered every section again)."""
    from harness.report import sections, write_report

    calls = []

    def counted(task):
        calls.append(task.name)
        return f"counted section of {task.name}"

    sections.register(sections.Section("counted", counted, scope="task"))
    try:
        write_report([stored_run(tmp_path)], tmp_path)
    finally:
        sections.SECTIONS._items.pop("counted", None)
    assert calls == ["t"]
    assert "counted section of t" in (tmp_path / "REPORT.md").read_text()
    assert "counted section of t" in (tmp_path / "REPORT.html").read_text()


def test_the_learning_curve_shows_each_size_and_the_untrained_levels_on_hover():
    from harness.report.html.svg import learning_curve_svg

    curves = {"lora": [(8, 0.40, 0.05, 2), (32, 0.62, 0.03, 2)], "one-size": [(32, 0.5, 0.0, 1)]}
    plot = learning_curve_svg(curves, {"few-shot": (0.55, 0.45, 0.65)}, "score (accuracy)", "t: learning curves")
    assert "lora, 8 training examples: 0.400 ± 0.050 over 2 seeds" in plot
    assert "few-shot (no training): 0.550 [0.450, 0.650]" in plot and "one-size" not in plot
    assert learning_curve_svg({"lora": [(8, 0.4, 0.0, 1)]}, {}, "score", "t") == ""  # one size: no curve


def test_the_search_plot_shows_each_trial_on_hover_and_rings_the_chosen_one():
    from harness.report.html.svg import search_svgs

    points = {
        "lora": {
            "x_label": "train.learning_rate",
            "log": True,
            "finished": [(1e-4, 0.9), (1e-3, 0.7)],
            "pruned": [(1e-7, 2.5)],
        }
    }
    (plot,) = search_svgs(points, {"lora": 1e-3}, {"lora": "validation loss (lower is better)"}, "t: search trials")
    assert "lora, train.learning_rate 0.001: validation loss (lower is better) 0.7 (chosen)" in plot
    assert "lora, train.learning_rate 1e-07: validation loss (lower is better) 2.5 (pruned, partial)" in plot
    assert plot.count('class="chosen"') == 1
    assert search_svgs({}, {}, {}, "t") == []
