"""`harness loadtest RUN`: each finished technique served (deploy/server.py's `launched`: the recipe's
`serving.engine`, else the built-in server, in a process of its own) and sent held-out prompts at each
concurrency of `eval.serving` through kind api's client (harness/endpoint.py, which works against any
OpenAI-compatible endpoint): `concurrency` requests in flight, `requests` per level, closed loop.

Per level: requests/s, generated tokens/s (the server's reported usage), latency p50/p95 of a request as
the client saw it (retrieval and queueing included), and time to first token p50/p95: answers are asked
for streamed, and the client times the first event with text (an engine that does not stream: None).

The row's cost per request then comes from served throughput: device price per second / requests per
second at the highest concurrency whose p95 meets `workload.latency_p95_seconds` (without a target: the
level of the highest throughput; when none meets it: concurrency 1's, said so). The batch run's figure is
kept as `batch_serving_usd_per_request`, and `serving_cost_basis` says which one the row's cost uses.

A server that fails (exits, stops answering) ends that technique's load test: the levels measured before
it stay, `serving_error` gives the reason, and the technique's other figures are untouched.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from harness import prompting
from harness.analysis.ownership import price_per_second
from harness.deploy import loader, server
from harness.evaluate.serving import percentile

# what a load test writes into a row (declared in figures.py / rows.FIELDS)
SERVED_KEYS = (
    "serving_levels",
    "serving_error",
    "serving_cost_basis",
    "serving_engine",
    "served_concurrency",
    "served_requests_per_second",
    "served_tokens_per_second",
    "served_latency_p50_seconds",
    "served_latency_p95_seconds",
    "batch_serving_usd_per_request",
)


def measure_level(
    base_url: str, model: str, conversations: list[list[dict]], concurrency: int, max_tokens: int
) -> dict:
    """One level: every conversation sent, `concurrency` in flight, through the api kind's client."""
    from harness.config import EndpointSettings
    from harness.endpoint import Endpoint

    settings = EndpointSettings(
        base_url=base_url, model=model, concurrency=concurrency, cache=False, max_retries=0, timeout_seconds=600
    )
    start = time.perf_counter()
    replies = Endpoint(settings, max_tokens, stream=True).ask_all(conversations)
    seconds = time.perf_counter() - start
    latencies = [r.latency for r in replies if r.latency is not None]
    ttfts = [r.ttft for r in replies if r.ttft is not None]
    tokens = sum(r.output_tokens or 0 for r in replies)
    return {
        "concurrency": concurrency,
        "requests": len(replies),
        "seconds": seconds,
        "requests_per_second": len(replies) / seconds,
        "tokens_per_second": tokens / seconds,
        "latency_p50_seconds": percentile(latencies, 50),
        "latency_p95_seconds": percentile(latencies, 95),
        "ttft_p50_seconds": percentile(ttfts, 50),
        "ttft_p95_seconds": percentile(ttfts, 95),
    }


def load_test(run_dir: str | Path, technique: str, load, serving) -> dict:
    """The row values of one technique's load test (see the module's docstring); never raises for a
    server that fails: its reason is `serving_error`."""
    store = loader.open_run(run_dir)
    _, ctx = loader.context(store, technique)
    examples = ctx.heldout_examples()
    requests = [prompting.messages(ctx.task, e) for e in examples]  # what a client sends (Served.request)
    max_tokens = ctx.recipe.eval.heldout.max_new_tokens
    levels: list[dict] = []
    error = None
    try:
        template, values, ready = server.engine_command(run_dir, technique, serving)
        log = Path(run_dir) / "logs" / f"serve-{technique}.log"
        with server.launched(template, values, log, ready) as up:
            measure_level(up.base_url, technique, requests[:1], 1, max_tokens)  # untimed: set-up and first shapes
            for concurrency in load.concurrency:
                conversations = list(itertools.islice(itertools.cycle(requests), load.requests))
                try:
                    levels.append(measure_level(up.base_url, technique, conversations, concurrency, max_tokens))
                except Exception as exc:  # noqa: BLE001 — the level fails with the server's own reason if it died
                    time.sleep(0.2)  # a killed server's exit status arrives just after its connections close
                    error = f"concurrency {concurrency}: {up.failure() or exc}"
                    break
        template = template.replace("{python}", "python")  # the command, as the report shows it
    except Exception as exc:  # noqa: BLE001 — a server that does not start: the reason, and no levels
        error, template = f"{type(exc).__name__}: {exc}", None
    return {"serving_levels": levels, "serving_error": error, "serving_engine": template}


def chosen_level(levels: list[dict], target: float | None) -> tuple[dict | None, str]:
    """The level the row's cost per request is read at, and why (see the module's docstring)."""
    if not levels:
        return None, ""
    if target is None:
        best = max(levels, key=lambda level: level["requests_per_second"])
        return (
            best,
            f"served at concurrency {best['concurrency']} (highest throughput; no workload.latency_p95_seconds)",
        )
    meeting = [level for level in levels if level["latency_p95_seconds"] <= target]
    if not meeting:
        first = levels[0]
        return first, (
            f"served at concurrency {first['concurrency']} (no level met the p95 target of {target:g}s: "
            f"{first['latency_p95_seconds']:.2f}s at the lowest)"
        )
    best = max(meeting, key=lambda level: level["concurrency"])
    return best, (
        f"served at concurrency {best['concurrency']} (p95 {best['latency_p95_seconds']:.2f}s within "
        f"the {target:g}s target)"
    )


def served_row(row, measured: dict, usd_per_hour: dict, target: float | None) -> dict:
    """The row with the load test's figures, its cost per request from served throughput where a level was
    measured (the batch run's figure kept beside it)."""
    values = {k: v for k, v in row.items() if k not in SERVED_KEYS} | measured
    batch = row.get("batch_serving_usd_per_request", row.get("serving_usd_per_request"))
    values["batch_serving_usd_per_request"] = batch
    level, basis = chosen_level(measured["serving_levels"], target)
    price = price_per_second(row.get("device"), usd_per_hour)
    if level is None or price is None:
        values |= {"serving_usd_per_request": batch, "serving_cost_basis": "batch run (no served level measured)"}
        return values
    return values | {
        "serving_usd_per_request": price / level["requests_per_second"],
        "serving_cost_basis": basis,
        "served_concurrency": level["concurrency"],
        "served_requests_per_second": level["requests_per_second"],
        "served_tokens_per_second": level["tokens_per_second"],
        "served_latency_p50_seconds": level["latency_p50_seconds"],
        "served_latency_p95_seconds": level["latency_p95_seconds"],
    }


def load_test_run(
    run_dir: str | Path, techniques: list[str] | None = None, load=None, on_level=print, store=None
) -> list:
    """Load-test the run's finished local techniques (`techniques`, else eval.serving.techniques, else all)
    and store the figures in its rows (through `store`, the caller's RunStore of the run, where it has
    one); the updated rows. `load` replaces the recipe's eval.serving (default: config.ServingLoad's)."""
    store = store or loader.open_run(run_dir)
    recipe = store.meta["recipe"]
    load = load or stored_load(run_dir)
    techniques = techniques or load.techniques
    serving = loader.stored_serving(run_dir)
    target = (recipe.get("workload") or {}).get("latency_p95_seconds")
    usd_per_hour = store.meta.get("usd_per_hour") or recipe.get("cost", {}).get("usd_per_hour", {})
    names = techniques or servable(store)
    updated = []
    for name in names:
        loader.reported_row(store, name)  # a technique that is not in the run, or did not finish: an error now
        measured = load_test(run_dir, name, load, serving)
        for level in measured["serving_levels"]:
            on_level(name, level)
        row = served_row(loader.reported_row(store, name), measured, usd_per_hour, target)
        store.record(row)
        updated.append(row)
    return updated


def servable(store) -> list[str]:
    """The run's finished techniques that a server can answer with: local models that write answers (not a
    hosted one, a reward model or a scored export)."""
    from harness import kinds

    return [
        r["technique"]
        for r in store.ordered_rows()
        if r["kind"] in kinds.known()
        and not kinds.hosted(r["kind"])
        and kinds.generates(r["kind"])
        and r["status"] == "ok"
        and not r.get("export_of")
    ]


def stored_load(run_dir: str | Path, concurrency: list[int] | None = None, requests: int | None = None):
    """The run's eval.serving (config.ServingLoad's defaults where it has none), with the given levels or count."""
    from harness.config import ServingLoad

    stored = loader.open_run(run_dir).meta["recipe"].get("eval", {}).get("serving") or {}
    given = {"concurrency": concurrency, "requests": requests}
    return ServingLoad.model_validate(stored | {k: v for k, v in given.items() if v is not None})
