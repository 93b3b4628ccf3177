"""The endpoint client (harness/endpoint.py) against a real HTTP server on loopback that misbehaves: what
an endpoint answers is validated before it is used or cached, a redirect never takes the key elsewhere,
and no answer holds a request past its timeout or fills the disk."""

import json
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
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{behaviour}/v1"

    def answer(self, handler, behaviour: str) -> None:
        bodies = {
            "ok": completion(),
            "nan": completion(usage={"prompt_tokens": float("nan"), "completion_tokens": 2}),
            "negative": completion(usage={"prompt_tokens": -5, "completion_tokens": 2}),
            "absurd": completion(usage={"prompt_tokens": 10**300, "completion_tokens": 2}),
            "string-usage": completion(usage="many"),
            "list-content": completion(content=[{"type": "text", "text": "billing"}]),
            "float-usage": completion(usage={"prompt_tokens": 10.0, "completion_tokens": 2.0}),
        }
        if behaviour in bodies:
            return self.send(handler, 200, json.dumps(bodies[behaviour]).encode())
        if behaviour == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            return handler.end_headers()
        if behaviour == "retry-after-600":
            return self.send(handler, 429, b"{}", {"Retry-After": "600"})
        if behaviour == "huge":
            return self.send(handler, 200, b" " * (MAX_RESPONSE_BYTES + 10))
        if behaviour == "drip":  # a valid answer, one byte every 0.1 s: a socket timeout of 0.5 s never fires
            body = json.dumps(completion()).encode()
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)

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
