"""An OpenAI-compatible chat-completions server for tests, with injectable faults.

Answers are deterministic functions of the request:
- translation ("... into {Language}."): every string value prefixed with "[{Language}] ";
- back-translation ("... into English."): every value prefixed with "[en] ";
- ranking (user object with "responses"): longest response first;
- anything else (self-instruct): a new task made of pseudo-words chosen by the prompt's hash.
Faults are consumed one per request from `server.faults`: ("429", retry_after_s),
("400",), ("401",), ("500",), ("delay", seconds), ("malformed",), ("truncated",), ("bad_ranking",).
"""

import hashlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


class FakeOpenAI:
    def __init__(self):
        self.faults: list[tuple] = []
        self.requests: list[dict] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.authorizations.append(self.headers.get("Authorization", ""))
                    fault = fake.faults.pop(0) if fake.faults else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._respond(body, fault)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _respond(self, body, fault):
                if fault and fault[0] == "429":
                    return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": str(fault[1])})
                if fault and fault[0] == "400":
                    return self._send(400, {"error": {"message": "context length exceeded"}})
                if fault and fault[0] == "401":
                    return self._send(401, {"error": {"message": "invalid key"}})
                if fault and fault[0] == "500":
                    return self._send(500, {"error": {"message": "server error"}})
                if fault and fault[0] == "delay":
                    time.sleep(fault[1])
                content, finish = answer(body), "stop"
                if fault and fault[0] == "malformed":
                    content = "Sure! Here is the JSON: {oops"
                if fault and fault[0] == "truncated":
                    content, finish = content[: len(content) // 2], "length"
                if fault and fault[0] == "bad_ranking":
                    content = json.dumps({"ranking": [1, 1]})
                self._send(200, completion(body, content, finish))

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def answer(body: dict) -> str:
    messages = body["messages"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    user = messages[-1]["content"]
    try:
        obj = json.loads(user)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and "responses" in obj:
        order = sorted(range(len(obj["responses"])), key=lambda i: -len(obj["responses"][i]))
        return json.dumps({"ranking": [i + 1 for i in order]})
    target = re.search(r"into ([A-Z][a-z]+)", system)
    if isinstance(obj, dict) and target:
        tag = "en" if target.group(1) == "English" else target.group(1)
        return json.dumps({k: f"[{tag}] {v}" if v else v for k, v in obj.items()}, ensure_ascii=False)
    # Six pseudo-words drawn from a thousand: new tasks rarely resemble each other.
    rng = random.Random(hashlib.sha256(user.encode()).hexdigest())
    topics = " ".join(f"topic{rng.randrange(1000)}" for _ in range(6))
    return json.dumps({"instruction": f"Explain {topics}.", "input": "", "output": f"An explanation of {topics}."})


def completion(body: dict, content: str, finish_reason: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason,
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


CANARY_KEY = "sk-canary-0123456789abcdef"
KEY_VARIABLE = "OKAPI_TEST_API_KEY"


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def openai_settings(fake_openai, tmp_path, monkeypatch):
    """LLM settings pointing at the fake server, with a canary key in the environment."""
    monkeypatch.setenv(KEY_VARIABLE, CANARY_KEY)
    return {
        "backend": "openai",
        "model": "fake-model",
        "base_url": fake_openai.base_url,
        "api_key_env": KEY_VARIABLE,
        "temperature": 0.0,
        "max_new_tokens": 256,
        "max_concurrency": 4,
        "max_retries": 2,
        "timeout_s": 10,
        "cache_dir": str(tmp_path / "cache"),
    }


def files_containing(root, text: str) -> list[str]:
    """Every file under root whose bytes contain text."""
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and text.encode() in p.read_bytes()]
