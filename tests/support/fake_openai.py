"""An OpenAI-compatible chat-completions and Batch server for tests, with injectable faults.

Answers are deterministic functions of the request:
- translation ("... into {Language}."): every word of every string value replaced by a
  word of that language (so a language identifier recognises it); code, URLs,
  numbers and placeholders are kept;
- ranking (user object with "responses"): longest response first;
- anything else (self-instruct): a new task made of pseudo-words chosen by the prompt's hash.
Faults are consumed one per request from `server.faults`: ("429", retry_after_s),
("400",), ("401",), ("500",), ("delay", seconds), ("drop",) (closes the connection),
("malformed",), ("truncated",), ("bad_ranking",), ("english",) (left untranslated),
("no_numbers",). `latency` delays every answer; `requests_per_minute` answers 429 with
Retry-After beyond that rate. Batch lines consume `batch_faults`: ("500",), ("expire",).
"""

import email.parser
import hashlib
import itertools
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from okapi_pipeline.config import llm_defaults


class FakeOpenAI:
    def __init__(self):
        self.faults: list[tuple] = []
        self.requests: list[dict] = []
        self.arrivals: list[float] = []  # time.monotonic() of each chat request, in order
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered: list[dict] = []  # bodies whose answer was sent in full
        self.latency = 0.0
        self.requests_per_minute = None
        self.rate_limited = 0
        self._bucket = (0.0, 0.0)  # (level, time) of a leaky bucket one second deep
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_faults: list[tuple] = []
        self._ids = itertools.count()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
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

    def over_rate(self) -> bool:
        """A leaky bucket at requests_per_minute that holds two seconds' allowance: stricter
        than a per-minute window, with room for arrivals bunched by the network."""
        if not self.requests_per_minute:
            return False
        rate = self.requests_per_minute / 60
        with self.lock:
            level, then = self._bucket
            now = time.monotonic()
            level = max(0.0, level - (now - then) * rate)
            if level + 1 > max(2 * rate, 1.0):
                self._bucket = (level, now)
                self.rate_limited += 1
                return True
            self._bucket = (level + 1, now)
        return False

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def run_batch(self, batch: dict) -> None:
        """Answer every line of the input file: output and error files as OpenAI writes them."""
        output, errors, expired = [], [], False
        for text in self.files[batch["input_file_id"]].decode().splitlines():
            line = json.loads(text)
            with self.lock:
                self.requests.append(line["body"])
                fault = self.batch_faults.pop(0) if self.batch_faults else None
            if fault and fault[0] == "expire":
                expired = True
                errors.append(
                    {
                        "id": self.new_id("line"),
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not done in time"},
                    }
                )
            elif fault and fault[0] == "500":
                errors.append(
                    {
                        "id": self.new_id("line"),
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 500, "body": {"error": {"message": "server error"}}},
                        "error": None,
                    }
                )
            else:
                output.append(
                    {
                        "id": self.new_id("line"),
                        "custom_id": line["custom_id"],
                        "error": None,
                        "response": {
                            "status_code": 200,
                            "body": completion(line["body"], answer(line["body"]), "stop"),
                        },
                    }
                )
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = self.new_id("file")
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                batch[name] = file_id
        batch["status"] = "expired" if expired else "completed"
        batch["request_counts"] = {"total": len(output) + len(errors), "completed": len(output), "failed": len(errors)}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if match := re.fullmatch(r"/v1/files/([\w-]+)/content", self.path):
                    return self._send_bytes(200, fake.files[match.group(1)], "application/octet-stream")
                if (match := re.fullmatch(r"/v1/batches/([\w-]+)", self.path)) and match.group(1) in fake.batches:
                    batch = fake.batches[match.group(1)]
                    # Still running at the first poll, done at the next.
                    if batch["status"] == "validating":
                        batch["status"] = "in_progress"
                    elif batch["status"] == "in_progress":
                        fake.run_batch(batch)
                    return self._send(200, batch)
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/files":
                    return self._upload(raw)
                if self.path == "/v1/batches":
                    request = json.loads(raw)
                    batch = {
                        "id": fake.new_id("batch"),
                        "object": "batch",
                        "endpoint": request["endpoint"],
                        "input_file_id": request["input_file_id"],
                        "completion_window": "24h",
                        "status": "validating",
                        "created_at": int(time.time()),
                        "errors": None,
                        "output_file_id": None,
                        "error_file_id": None,
                        "request_counts": None,
                    }
                    fake.batches[batch["id"]] = batch
                    return self._send(200, batch)
                body = json.loads(raw)
                if fake.over_rate():
                    return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
                with fake.lock:
                    fake.requests.append(body)
                    fake.arrivals.append(time.monotonic())
                    fake.authorizations.append(self.headers.get("Authorization", ""))
                    fault = fake.faults.pop(0) if fake.faults else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    if self._respond(body, fault) == 200:
                        with fake.lock:
                            fake.answered.append(body)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _upload(self, raw):
                message = email.parser.BytesParser().parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
                )
                part = next(
                    p for p in message.get_payload() if p.get_param("name", header="content-disposition") == "file"
                )
                file_id = fake.new_id("file")
                fake.files[file_id] = part.get_payload(decode=True)
                self._send(
                    200,
                    {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(fake.files[file_id]),
                        "created_at": int(time.time()),
                        "filename": "batch.jsonl",
                        "purpose": "batch",
                    },
                )

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
                if fault and fault[0] == "drop":
                    self.close_connection = True
                    return self.connection.shutdown(2)
                content, finish = answer(body), "stop"
                if fault and fault[0] == "malformed":
                    content = "Sure! Here is the JSON: {oops"
                if fault and fault[0] == "truncated":
                    content, finish = content[: len(content) // 2], "length"
                if fault and fault[0] == "bad_ranking":
                    content = json.dumps({"ranking": [1, 1]})
                if fault and fault[0] == "english":
                    content = messages_user(body)
                if fault and fault[0] == "no_numbers":
                    content = re.sub(r"\d+", "", content)
                return self._send(200, completion(body, content, finish))

            def _send(self, status, payload, headers=None):
                return self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

            def _send_bytes(self, status, data, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return status

        return Handler


# A few frequent words per language: enough for a language identifier to be sure.
VOCABULARY = {
    "Vietnamese": "những người được không của và một trong cho với là có các này đã".split(),
    "Indonesian": "yang dengan untuk tidak dalam adalah ini dari akan kami bisa juga".split(),
    "German": "und nicht mit für sich auf dass eine werden über auch noch nach".split(),
    "Bengali": "এবং একটি করে তার থেকে জন্য হয় এই না করা হবে সঙ্গে".split(),
    "English": "the and with for that this from have will they about which there".split(),
}
KEPT = re.compile(r"(```.*?```|`[^`]+`|https?://\S+|\{[^}]+\}|<[a-z_]+>|\d+)", re.S)


def fake_translation(text: str, language: str) -> str:
    """Each word replaced by a word of the language; code, URLs, numbers, placeholders kept."""
    words = VOCABULARY.get(language, VOCABULARY["German"])

    def swap(match):
        return words[int(hashlib.sha256(match.group(0).encode()).hexdigest(), 16) % len(words)]

    parts = KEPT.split(text)
    return "".join(part if index % 2 else re.sub(r"[^\W\d_]+", swap, part) for index, part in enumerate(parts))


def messages_user(body: dict) -> str:
    return body["messages"][-1]["content"]


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
        return json.dumps({k: fake_translation(v, target.group(1)) for k, v in obj.items()}, ensure_ascii=False)
    # Self-instruct: as many tasks as the prompt's numbered keys ask for, each about six
    # pseudo-words drawn from a thousand, so new tasks rarely resemble each other.
    rng = random.Random(hashlib.sha256(user.encode()).hexdigest())
    tasks = {}
    for number in range(1, max([int(n) for n in re.findall(r"instruction_(\d+)", user)], default=1) + 1):
        topics = " ".join(f"topic{rng.randrange(1000)}" for _ in range(6))
        tasks.update(
            {
                f"instruction_{number}": f"Explain {topics}.",
                f"input_{number}": "",
                f"output_{number}": f"An explanation of {topics}.",
            }
        )
    return json.dumps(tasks)


def completion(body: dict, content: str, finish_reason: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
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
        **llm_defaults(),
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
        "requests_per_minute": None,
        "tokens_per_minute": None,
        "mode": "online",
        "batch_poll_s": 0.01,
        "price_input_per_1k": 0.0,
        "price_output_per_1k": 0.0,
        "budget_usd": None,
        "max_reject_share": 1.0,
        "answer_checks": "strict",
    }


def files_containing(root, text: str) -> list[str]:
    """Every file under root whose bytes contain text."""
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and text.encode() in p.read_bytes()]
