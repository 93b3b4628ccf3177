"""`harness view RUN [RUN ...]`: the runs' folders over HTTP on 127.0.0.1 only, each under /runN/, with an
index page at / that links each run's REPORT.html (written first where missing) and, for two runs, shows
`harness compare`'s table of deltas."""

from __future__ import annotations

import io
import threading
from functools import partial
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.report.html import write_stores_html
from harness.report.html.page import asset
from harness.results import open_runs, report_folder

HOST = "127.0.0.1"  # loopback only: a results folder is not published to the network


def report_page(run: str | Path) -> Path:
    """The run's REPORT.html, rendered from its results when it has none yet."""
    stores = open_runs(run)
    folder = report_folder(stores)
    path = folder / "REPORT.html"
    return path if path.is_file() else write_stores_html(stores, folder)


def compare_html(run_a: str | Path, run_b: str | Path) -> str:
    """`harness compare A B`'s table as HTML (rich escapes every text it exports)."""
    from rich.console import Console

    from harness.report.compare_table import compare_table

    console = Console(record=True, width=160, file=io.StringIO())
    console.print(compare_table(run_a, run_b))
    return console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")


def index_html(runs: list[str | Path], pages: list[Path]) -> str:
    links = "".join(
        f'<li><a href="run{i}/{escape(page.name)}">{escape(str(run))}</a></li>'
        for i, (run, page) in enumerate(zip(runs, pages), start=1)
    )
    compared = ""
    if len(runs) == 2:
        compared = f"<h2>B - A (harness compare)</h2>{compare_html(runs[0], runs[1])}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>harness view</title>'
        f"<style>{asset('report.css')}</style></head><body><main><h1>Runs</h1><ol>{links}</ol>{compared}"
        "</main></body></html>\n"
    )


class Handler(SimpleHTTPRequestHandler):
    """Files of the run folders under /run1/, /run2/, ...; the index page at /."""

    def __init__(self, *args, mounts: dict[str, Path], index: bytes, **kwargs):
        self.mounts, self.index = mounts, index
        super().__init__(*args, directory=str(next(iter(mounts.values()))), **kwargs)

    def do_GET(self):
        if self.path.split("?")[0] == "/favicon.ico":  # a browser asks for it: no icon, and no 404 in its console
            self.send_response(204)
            self.end_headers()
            return
        if self.path.split("?")[0] in ("/", "/index.html"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.index)))
            self.end_headers()
            self.wfile.write(self.index)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        """A path under /runN/ inside run N's folder (the base class keeps '..' from leaving it, a link
        that leads out is refused); any other path a file that does not exist (404)."""
        mount, _, rest = path.lstrip("/").partition("/")
        missing = str(Path(self.directory) / ".harness-view-not-found")
        if mount not in self.mounts:
            return missing
        self.directory = str(self.mounts[mount])
        found = super().translate_path("/" + rest)
        # a link inside a run folder that leads out of it is not followed: the folder is data (docs/trust.md)
        return found if Path(found).resolve().is_relative_to(self.mounts[mount].resolve()) else missing

    def log_message(self, format, *args):  # noqa: A002 — the base class's name
        pass  # the terminal shows the URL, not every request


def serve(runs: list[str | Path], port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving the runs in a background thread; the server and the URL of the page to open (the
    run's REPORT.html for one run, the index for several). `server.shutdown()` stops it."""
    pages = [report_page(run) for run in runs]
    mounts = {f"run{i}": page.parent for i, page in enumerate(pages, start=1)}
    handler = partial(Handler, mounts=mounts, index=index_html(list(runs), pages).encode())
    server = ThreadingHTTPServer((HOST, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{HOST}:{server.server_address[1]}/"
    return server, base + (f"run1/{pages[0].name}" if len(runs) == 1 else "")
