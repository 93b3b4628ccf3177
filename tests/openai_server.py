"""A small, real OpenAI-compatible chat-completions server for tests, on loopback, serving a local model.

POST {url}/chat/completions with {model, messages, max_tokens, temperature} applies the model's chat
template, generates (greedily at temperature 0, as the harness's local techniques do) and answers in
OpenAI's response shape with `usage` token counts. What it answers is chosen by the path prefix, so one
server plays several endpoints:

    /v1                  normal
    /fail-429-<n>/v1     HTTP 429 (Retry-After: 0) for the first n requests to this prefix, then normal
    /always-429/v1       HTTP 429 (Retry-After: 0) always
    /always-500/v1       HTTP 500 always
    /slow-<s>/v1         answers after s seconds
    /judge-4/v1          always JUDGE_REPLY, without the model (a judge that grades deterministically); usage
                         counts whitespace-separated words: the messages' contents in, the reply's out

With `key`, a request without `Authorization: Bearer <key>` gets HTTP 401. `requests` records every
request received (prefix, body, whether it carried the right key), for tests to inspect.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

JUDGE_REPLY = "Score: 4\nThe reply names the team."


class OpenAIServer:
    def __init__(self, model_dir: Path, key: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.key = key
        self.requests: list[dict] = []
        self.served: dict[str, int] = {}  # prefix -> requests seen
        self.lock = threading.Lock()  # one generation at a time; counters
        self.httpd: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's naming
                server.handle(self)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, prefix: str = "") -> str:
        """The base_url of one behaviour: url() normal, url('/always-429') rate limited, ..."""
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["prefix"] == prefix)

    # --- requests --------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        match = re.fullmatch(r"(.*)/v1/chat/completions", handler.path)
        if match is None:
            return self.send(handler, 404, {"error": {"message": f"no route {handler.path}"}})
        prefix = match.group(1)
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        authorized = self.key is None or handler.headers.get("Authorization") == f"Bearer {self.key}"
        with self.lock:
            self.requests.append(
                {
                    "prefix": prefix,
                    "body": body,
                    "authorized": authorized,
                    "sent_key": handler.headers.get("Authorization") is not None,
                }
            )
            seen = self.served[prefix] = self.served.get(prefix, 0) + 1
        if not authorized:
            return self.send(
                handler, 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            )
        failing = re.fullmatch(r"/fail-429-(\d+)", prefix)
        if prefix == "/always-429" or (failing and seen <= int(failing.group(1))):
            return self.send(
                handler, 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, {"Retry-After": "0"}
            )
        if prefix == "/always-500":
            return self.send(handler, 500, {"error": {"message": "internal error"}})
        if prefix == "/judge-4":
            return self.send(handler, 200, self.canned(body, JUDGE_REPLY))
        slow = re.fullmatch(r"/slow-([\d.]+)", prefix)
        if slow:
            time.sleep(float(slow.group(1)))
        self.send(handler, 200, self.complete(body))

    def complete(self, body: dict) -> dict:
        import torch

        tokenizer, model = self.tokenizer, self.model
        prompt = tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=not tokenizer.chat_template)
        temperature = float(body.get("temperature", 1.0))
        stop_ids = sorted({tokenizer.eos_token_id, model.generation_config.eos_token_id} - {None})
        sampling = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        with self.lock, torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=int(body.get("max_tokens", 16)),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_ids,
                **sampling,
            )
        new = output[0, encoded["input_ids"].shape[1] :].tolist()
        stopped = next((n + 1 for n, t in enumerate(new) if t in stop_ids), None)
        new = new[:stopped] if stopped else new
        prompt_tokens = encoded["input_ids"].shape[1]
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": tokenizer.decode(new, skip_special_tokens=True)},
                    "finish_reason": "stop" if stopped else "length",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(new),
                "total_tokens": prompt_tokens + len(new),
            },
        }

    def canned(self, body: dict, content: str) -> dict:
        """A chat completion that answers `content`, whatever was asked."""
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, payload: dict | bytes, headers: dict | None = None) -> None:
        """A JSON answer (`payload` as an object, or as the bytes to send, malformed ones included)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
