"""The endpoint client (harness/endpoint.py) against a real HTTP server on loopback that misbehaves: what
an endpoint answers is validated before it is used or cached, a redirect never takes the key elsewhere,
and no answer holds a request past its timeout or fills the disk."""

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from openai_server import OpenAIServer

from harness.endpoint import MAX_RESPONSE_BYTES, MAX_RETRY_AFTER_SECONDS, Endpoint, EndpointError
from harness.techniques.api import ApiTechnique

KEY = "sk-hostile-test-0c1d2e3f"
KEY_ENV = "HARNESS_TEST_HOSTILE_KEY"


def completion(content="billing", usage=None) -> dict:
    usage = {"prompt_tokens": 10, "completion_tokens": 2} if usage is None else usage
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}], "usage": usage}


def canned(behaviour: str, key: str, served: int) -> tuple[int, dict | bytes, dict] | None:
    """The one HTTP answer (status, JSON object or raw body, headers) of a behaviour that is one; None for
    those that play with the connection. `key`: the Authorization header received; `served`: requests to
    this behaviour so far, this one included."""
    bodies = {
        "ok": completion(),
        "nan": completion(usage={"prompt_tokens": float("nan"), "completion_tokens": 2}),
        "negative": completion(usage={"prompt_tokens": -5, "completion_tokens": 2}),
        "absurd": completion(usage={"prompt_tokens": 10**300, "completion_tokens": 2}),
        "string-usage": completion(usage="many"),
        "bool-usage": completion(usage={"prompt_tokens": True, "completion_tokens": 2}),
        "list-usage": completion(usage=[10, 2]),
        "fractional-usage": completion(usage={"prompt_tokens": 10.5, "completion_tokens": 2}),
        "float-usage": completion(usage={"prompt_tokens": 10.0, "completion_tokens": 2.0}),
        "no-usage": {"choices": completion()["choices"]},
        "list-content": completion(content=[{"type": "text", "text": "billing"}]),
        "number-content": completion(content=42),
        "missing-choices": {"usage": completion()["usage"]},
        "empty-choices": completion() | {"choices": []},
        "no-message": completion() | {"choices": [{"index": 0, "text": "billing"}]},
        "tool-calls": completion()
        | {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [{}]}}]},
        "echo-key-in-content": completion(content=f"you sent {key}"),
    }
    if behaviour in bodies:
        return 200, bodies[behaviour], {}
    status = {"500-then-ok": 500, "429-then-ok": 429}.get(behaviour, 200)
    busy = (status, b'{"error": "busy"}', {"Retry-After": "0"}) if served % 2 else (200, completion(), {})
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"<p>nginx</p>" * 200 + b"</body></html>"
    others: dict[str, tuple[int, dict | bytes, dict]] = {
        "array-body": (200, b"[]", {}),
        "null-body": (200, b"null", {}),
        "not-json": (200, b"Service temporarily unavailable", {}),
        "empty-body": (200, b"", {}),
        "deep-json": (200, b"[" * 100_000 + b"]" * 100_000, {}),
        "bad-utf8": (200, b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', {}),
        "gzip-garbage": (200, b"\x1f\x8b not really gzip", {"Content-Encoding": "gzip"}),
        "wrong-content-type": (200, json.dumps(completion()).encode(), {"Content-Type": "text/plain"}),
        "huge": (200, b" " * (MAX_RESPONSE_BYTES + 10), {}),
        "html-500": (500, page, {"Content-Type": "text/html"}),
        "500-then-ok": busy,  # every other request fails, with no wait asked
        "429-then-ok": busy,
        "retry-after-600": (429, b"{}", {"Retry-After": "600"}),
        "retry-after-garbage": (429, b"{}", {"Retry-After": "soon, maybe"}),
        "401-echoes-key": (401, {"error": f"bad key {key}"}, {}),
        "404": (404, b'{"error": "no such model"}', {}),
    }
    return others.get(behaviour)


class Hostile:
    """One server, a behaviour per path prefix; every request's path and Authorization header recorded."""

    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []
        self.redirect_to = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.seen.append((self.path, self.headers.get("Authorization")))
                server.answer(self, self.path.split("/")[1])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a reset or cut connection is the point
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{behaviour}/v1"

    def answer(self, handler, behaviour: str) -> None:
        served = sum(path.split("/")[1] == behaviour for path, _ in self.seen)
        response = canned(behaviour, handler.headers.get("Authorization", ""), served)
        if response is not None:
            return self.send(handler, *response)
        if behaviour in ("redirect", "redirect-same-origin"):
            handler.send_response(302)
            handler.send_header("Location", self.redirect_to if behaviour == "redirect" else self.url("ok"))
            handler.send_header("Content-Length", "0")
            return handler.end_headers()
        if behaviour == "slow":  # a valid answer after 2 s
            time.sleep(2)
            return self.send(handler, 200, completion())
        if behaviour == "truncated-body":  # says 1,000 bytes, sends 40, hangs up
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            handler.wfile.write(json.dumps(completion()).encode()[:40])
        elif behaviour == "not-http":
            handler.wfile.write(b"garbage that is not HTTP\r\n\r\n")
        elif behaviour == "reset":  # the connection reset, no answer at all
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
        elif behaviour == "drip":  # a valid answer, one byte every 0.1 s: a socket timeout of 0.5 s never fires
            body = json.dumps(completion()).encode()
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)
        handler.close_connection = True
        return None

    send = staticmethod(OpenAIServer.send)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hostile():
    server, elsewhere = Hostile(), Hostile()  # `elsewhere`: another origin a redirect points to
    server.redirect_to = elsewhere.url("ok") + "/chat/completions"
    yield server, elsewhere
    server.stop()
    elsewhere.stop()


@pytest.fixture
def endpoint_at(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, KEY)

    def make(url: str, **settings) -> Endpoint:
        fields = {"max_retries": 0, "backoff_seconds": 0.01, "api_key_env": KEY_ENV} | settings
        return Endpoint(ApiTechnique(kind="api", name="x", base_url=url, model="m", **fields), max_tokens=4)

    return make


@pytest.mark.parametrize(
    "behaviour, message",
    [
        ("nan", "usage.prompt_tokens is nan, not a token count"),
        ("negative", "usage.prompt_tokens is -5, not a token count"),
        ("absurd", "not a token count (0 to 10,000,000)"),
        ("string-usage", "usage is a str, not an object"),
        ("list-content", "choices[0].message.content is a list, not text"),
    ],
)
def test_a_malformed_answer_fails_the_request_and_is_not_cached(hostile, endpoint_at, tmp_path, behaviour, message):
    server, _ = hostile
    with pytest.raises(EndpointError, match="answered a malformed chat completion") as failed:
        endpoint_at(server.url(behaviour)).chat([{"role": "user", "content": "hi"}])
    assert message in str(failed.value)
    assert not list((tmp_path / "cache").rglob("*.json"))  # asked again once the server is fixed


def test_a_valid_answer_is_used_and_whole_float_counts_are_read_as_counts(hostile, endpoint_at):
    server, _ = hostile
    reply = endpoint_at(server.url("float-usage")).chat([{"role": "user", "content": "hi"}])
    assert (reply.text, reply.input_tokens, reply.output_tokens) == ("billing", 10, 2)
    assert isinstance(reply.input_tokens, int)


def test_a_redirect_is_not_followed_and_the_key_does_not_leave(hostile, endpoint_at):
    server, elsewhere = hostile
    with pytest.raises(EndpointError, match="HTTP 302 .* redirects to .* which is not followed"):
        endpoint_at(server.url("redirect")).chat([{"role": "user", "content": "hi"}])
    assert not elsewhere.seen  # urllib would have posted there again, Authorization header and all


def test_an_answer_that_drips_is_cut_at_the_timeout(hostile, endpoint_at):
    server, _ = hostile
    start = time.monotonic()
    with pytest.raises(EndpointError, match="did not answer within 0.5s"):
        endpoint_at(server.url("drip"), timeout_seconds=0.5).chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 2.5  # the body takes ~20 s to arrive


def test_a_huge_answer_is_not_read(hostile, endpoint_at, tmp_path):
    server, _ = hostile
    with pytest.raises(EndpointError, match="answered more than 2 MB"):
        endpoint_at(server.url("huge")).chat([{"role": "user", "content": "hi"}])
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_a_long_retry_after_is_cut_and_said(hostile, endpoint_at):
    server, _ = hostile
    endpoint = endpoint_at(server.url("retry-after-600"))
    assert endpoint.delay(0, 600.0) == MAX_RETRY_AFTER_SECONDS == 60
    with pytest.raises(EndpointError, match=r"its Retry-After of 600s was cut to 60s"):
        endpoint.chat([{"role": "user", "content": "hi"}])


def test_json_nested_too_deeply_fails_the_request_not_the_cell(hostile, endpoint_at):
    server, _ = hostile  # json.loads raises RecursionError, not a ValueError, on 100,000 nested brackets
    with pytest.raises(EndpointError, match="answered with no chat completion"):
        endpoint_at(server.url("deep-json")).chat([{"role": "user", "content": "hi"}])


def test_an_answer_that_echoes_the_key_is_stored_and_returned_without_it(hostile, endpoint_at, tmp_path):
    server, _ = hostile
    reply = endpoint_at(server.url("echo-key-in-content")).chat([{"role": "user", "content": "hi"}])
    assert reply.text == "you sent Bearer [redacted]"  # the reply goes into predictions, REPORT.md, PR comments
    (stored,) = (tmp_path / "cache").rglob("*.json")
    assert KEY not in stored.read_text()
