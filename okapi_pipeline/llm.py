"""The one LLM-call layer behind self-instruct, translation, back-translation and ranking.

Three backends share one interface: `openai` (the official client against any
OpenAI-compatible server), `hf` (a local transformers causal LM, for offline runs)
and `mt` (a local seq2seq translation model such as NLLB-200, okapi_pipeline.mt).
Every answer goes through a persistent response cache that lives outside
Snakemake's outputs: one append-only JSONL file per (stage, language, shard),
keyed by a SHA-256 of the full request and fsynced per answer, so a killed or
rerun job never sends an answered request again. Files, not SQLite, because many
jobs on many nodes share the filesystem.

Online, requests run concurrently (up to max_concurrency) paced to the RPM/TPM
limits with aiolimiter; the openai client retries 429 (honouring Retry-After),
5xx, timeouts and dropped connections. `mode: batch` sends the same requests
through the OpenAI Batch API instead (okapi_pipeline.batch), into the same cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)


# Settings that change no answer (how fast, where cached, what it may cost): kept out of
# the rule params, so a new rate limit or a higher budget reruns no finished job.
OPERATIONAL_SETTINGS = (
    "api_key_env", "max_concurrency", "requests_per_minute", "tokens_per_minute", "timeout_s", "cache_dir",
    "mode", "batch_poll_s", "price_input_per_1k", "price_output_per_1k", "budget_usd", "max_reject_share",
    "segments_per_second",
)


# Settings only the `mt` backend reads: for the others they change no answer.
MT_SETTINGS = ("engine", "num_beams", "max_segment_tokens")


def answer_settings(settings: dict) -> dict:
    """The settings that shape the answers (the rule params)."""
    ignored = OPERATIONAL_SETTINGS + (() if settings.get("backend") == "mt" else MT_SETTINGS)
    return {key: value for key, value in settings.items() if key not in ignored}


@dataclass(frozen=True)
class JsonRequest:
    """Ask for a JSON object with (at least) `keys`.

    `user` is sent as the user message (a dict is sent as JSON). `tag` only enters the
    cache key: two requests with the same text but different tags are different
    requests (self-instruct asks the same kind of question many times).
    `languages` (source, target), ISO 639-1, is set by the translation stages: the `mt`
    backend translates between them (it reads no prompt).
    """

    system: str
    user: dict | str
    keys: tuple[str, ...]
    tag: str = ""
    languages: tuple[str, str] | None = None

    def user_text(self) -> str:
        if isinstance(self.user, str):
            return self.user
        return json.dumps(self.user, ensure_ascii=False)


@dataclass(frozen=True)
class Rejected:
    """A request whose answers were all unusable, with the last reason and answer."""

    reason: str
    answer: str = ""


class TooManyRejects(RuntimeError):
    """More of a job's items were rejected than `max_reject_share` accepts."""


def check_reject_share(report: dict, settings: dict, what: str, cache_path) -> None:
    """Fail the job, in one line, when the rejects exceed the accepted failure rate.

    Called after the outputs are written; the answers stay in the cache, so a rerun
    after fixing the cause (or raising the limit) pays nothing for them.
    """
    total, rejected = report["total"], report["rejected"]
    limit = settings.get("max_reject_share", 0.05)
    if total and rejected / total > limit:
        reasons = sorted(report["reasons"].items(), key=lambda item: -item[1])[:3]
        raise TooManyRejects(
            f"{what}: {rejected} of {total} items rejected ({rejected / total:.1%}, more than "
            f"max_reject_share {limit:.1%}); top reasons: {'; '.join(f'{r} x{n}' for r, n in reasons)}; "
            f"answers are kept in {cache_path}: fix the cause or raise llm.max_reject_share, then rerun")


@dataclass
class Answer:
    content: str
    finish_reason: str


# A stage-level check of a parsed answer: None when usable, else the reason.
Check = Callable[[JsonRequest, dict], "str | None"]


def cache_file(settings: dict, cache_name: str) -> Path:
    return Path(settings["cache_dir"]) / f"{cache_name}.jsonl"


class ResponseCache:
    """Append-only JSONL of answers keyed by request hash; one writer per file."""

    def __init__(self, path):
        self.path = Path(path)
        self.answers: dict[str, Answer] = {}
        if self.path.exists():
            self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                self.answers[entry["key"]] = Answer(entry["content"], entry["finish_reason"])
            except (json.JSONDecodeError, KeyError, TypeError):
                # A job killed mid-write leaves a partial last line; its request is asked again.
                log.warning("cache %s: ignoring unreadable line %d", self.path, number)
        log.info("cache %s: %d answers loaded", self.path, len(self.answers))

    def get(self, key: str) -> Answer | None:
        return self.answers.get(key)

    def put(self, key: str, answer: Answer) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
            if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
                self._handle.write("\n")
        line = {"key": key, "content": answer.content, "finish_reason": answer.finish_reason}
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.answers[key] = answer

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def parse_json_answer(answer: Answer, keys: Sequence[str]) -> tuple[dict | None, str | None]:
    """The answer as a dict with every key, or (None, reason)."""
    if answer.finish_reason == "length":
        return None, "truncated (finish_reason length)"
    if answer.finish_reason == "content_filter":
        return None, "content filter"
    if answer.finish_reason == "refused":
        return None, "refused by the server: " + answer.content[:200]
    try:
        value = json.loads(answer.content)
    except json.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    missing = [key for key in keys if key not in value]
    if missing:
        return None, "missing keys: " + ", ".join(missing)
    return value, None


class LLMClient:
    """Send JSON requests through the cache to one backend; ask again when unusable."""

    def __init__(self, settings: dict, cache_path, backend: "_Backend"):
        self.settings = settings
        self.cache = ResponseCache(cache_path)
        self.backend = backend
        self.sent = 0

    @classmethod
    def from_settings(cls, settings: dict, cache_path, threads: int = 1) -> "LLMClient":
        """`threads`: CPU threads of a local model (the rule's threads)."""
        kind = settings["backend"]
        if kind == "openai":
            backend = _OpenAIBackend(settings)
        elif kind == "hf":
            backend = _HFBackend(settings, threads)
        elif kind == "mt":
            from okapi_pipeline.mt import MTBackend

            backend = MTBackend(settings, threads)
        else:
            raise ValueError(f"unknown LLM backend '{kind}' (openai, hf or mt)")
        return cls(settings, cache_path, backend)

    def _key(self, request: JsonRequest, attempt: int) -> str:
        payload = {
            "backend": self.settings["backend"],
            "model": self.backend.model_id,
            "messages": _messages(request),
            "keys": list(request.keys),
            "temperature": self.settings["temperature"],
            "max_new_tokens": self.settings["max_new_tokens"],
            "tag": request.tag,
            "attempt": attempt,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def json_requests(self, requests: Sequence[JsonRequest], check: Check | None = None) -> list[dict | Rejected]:
        """One result per request: the parsed dict, or Rejected with the reason.

        An unusable answer (not JSON, keys missing, truncated, or refused by `check`)
        is asked again, up to max_retries more times; every attempt is cached under
        its own key, so a rerun replays them all without sending anything.
        """
        results: list[dict | Rejected | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(self._attempts()):
            if not pending:
                break
            keys = {index: self._key(requests[index], attempt) for index in pending}
            to_send = [index for index in pending if self.cache.get(keys[index]) is None]
            if to_send:
                log.info("attempt %d: %d requests (%d answered from cache)",
                         attempt + 1, len(to_send), len(pending) - len(to_send))
                self.backend.answer([requests[i] for i in to_send], [keys[i] for i in to_send], self.cache)
                self.sent += len(to_send)
            still = []
            for index in pending:
                answer = self.cache.get(keys[index])
                value, reason = parse_json_answer(answer, requests[index].keys)
                if reason is None and check is not None:
                    reason = check(requests[index], value)
                if reason is None:
                    results[index] = value
                else:
                    results[index] = Rejected(reason, answer.content)
                    still.append(index)
            pending = still
        return results

    def _attempts(self) -> int:
        # A local model at temperature 0 gives the same answer every time.
        if self.settings["backend"] in ("hf", "mt") and self.settings["temperature"] == 0:
            return 1
        return 1 + self.settings["max_retries"]

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Mean token log-probability of each continuation after the prompt (hf only)."""
        if not isinstance(self.backend, _HFBackend):
            raise TypeError("score() needs the hf backend; the openai judge ranks with a prompt")
        return self.backend.score(prompt, continuations)

    def close(self) -> None:
        self.cache.close()


def _messages(request: JsonRequest) -> list[dict]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    return messages + [{"role": "user", "content": request.user_text()}]


class _Backend:
    model_id: str

    def answer(self, requests: list[JsonRequest], keys: list[str], cache: ResponseCache) -> None:
        """Answer every request and put each answer into the cache as soon as it arrives."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what answering needs (a local model), e.g. before timing it."""


class _OpenAIBackend(_Backend):
    def __init__(self, settings: dict):
        variable = settings["api_key_env"]
        if not os.environ.get(variable):
            raise RuntimeError(f"the API key is missing: set the environment variable {variable}")
        self.settings = settings
        self.model_id = settings["model"]

    def client_options(self) -> dict:
        # The client retries 429 (honouring Retry-After up to two minutes), 5xx,
        # timeouts and dropped connections itself, with exponential backoff.
        return {
            "api_key": os.environ[self.settings["api_key_env"]],
            "base_url": self.settings.get("base_url"),
            "max_retries": self.settings["max_retries"],
            "timeout": self.settings["timeout_s"],
        }

    def body(self, request: JsonRequest) -> dict:
        """The chat-completions request body, the same online and in a batch file."""
        return {
            "model": self.model_id,
            "messages": _messages(request),
            "temperature": self.settings["temperature"],
            "max_completion_tokens": self.settings["max_new_tokens"],
            "response_format": {"type": "json_object"},
        }

    def answer(self, requests, keys, cache) -> None:
        if self.settings.get("mode", "online") == "batch":
            from okapi_pipeline.batch import answer_in_batches

            answer_in_batches(self.client_options(), [self.body(r) for r in requests], keys, cache, self.settings)
        else:
            asyncio.run(self._answer_all(requests, keys, cache))

    async def _answer_all(self, requests, keys, cache) -> None:
        from openai import AsyncOpenAI, BadRequestError
        from tqdm import tqdm

        client = AsyncOpenAI(**self.client_options())
        semaphore = asyncio.Semaphore(self.settings["max_concurrency"])
        limits = _Limits(self.settings.get("requests_per_minute"), self.settings.get("tokens_per_minute"))
        bodies = [self.body(r) for r in requests]
        prompt_tokens = sum(estimate_tokens(b["messages"]) for b in bodies)
        log.info("%d requests to %s: about %d prompt tokens, at most %d completion tokens",
                 len(requests), self.model_id, prompt_tokens, len(requests) * self.settings["max_new_tokens"])
        name = "/".join(cache.path.with_suffix("").parts[-3:])
        progress = tqdm(total=len(requests), desc=name, unit="req", mininterval=5, file=sys.stderr)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}

        async def one(body: dict, key: str) -> None:
            async with semaphore:
                await limits.wait(estimate_tokens(body["messages"]) + body["max_completion_tokens"])
                try:
                    response = await client.chat.completions.create(**body)
                except BadRequestError as error:
                    # This request, not the setup, is at fault (too long, filtered):
                    # reject it and go on. Other errors end the job after the retries.
                    cache.put(key, Answer(str(error.message), "refused"))
                    progress.update()
                    return
            choice = response.choices[0]
            cache.put(key, Answer(choice.message.content or "", choice.finish_reason or ""))
            if response.usage is not None:
                usage["prompt_tokens"] += response.usage.prompt_tokens
                usage["completion_tokens"] += response.usage.completion_tokens
            progress.update()

        try:
            async with client:
                await asyncio.gather(*(one(b, k) for b, k in zip(bodies, keys)))
        finally:
            progress.close()
            log.info("tokens used: %d prompt, %d completion", usage["prompt_tokens"], usage["completion_tokens"])


def estimate_tokens(messages: list[dict]) -> int:
    """A tokenizer-free estimate: about 4 characters a token, plus a few per message."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)


class _Limits:
    """Paces request starts to the requests- and tokens-per-minute limits (leaky buckets).

    Both are metered in one-second windows, so a minute's allowance never arrives as
    one burst; a request larger than a second's tokens counts as a second's worth.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = _per_second(requests_per_minute)
        self.tokens = _per_second(tokens_per_minute)

    async def wait(self, tokens: int) -> None:
        if self.requests is not None:
            await self.requests.acquire()
        if self.tokens is not None:
            await self.tokens.acquire(min(tokens, self.tokens.max_rate))


def _per_second(per_minute: float | None):
    from aiolimiter import AsyncLimiter

    if not per_minute:
        return None
    burst = max(1.0, per_minute / 60)
    return AsyncLimiter(burst, 60 * burst / per_minute)


class _HFBackend(_Backend):
    """A local causal LM. It cannot be trusted to write JSON, so it fills one key at a time.

    The model loads on first use: a rerun answered from the cache never imports torch.
    """

    def __init__(self, settings: dict, threads: int = 1):
        self.settings = settings
        self.threads = threads
        self.model_id = _model_fingerprint(settings["model"])
        self.model = None

    def prepare(self) -> None:
        self._load()

    def _load(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        settings = self.settings
        self.torch = torch
        torch.set_num_threads(self.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(settings["model"])
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(settings["model"], dtype=dtype).to(self.device)
        self.model.eval()

    @staticmethod
    def key_prompt(request: JsonRequest, key: str) -> str:
        head = f"{request.system}\n\n" if request.system else ""
        return f"{head}{request.user_text()}\n\n{key}:"

    def answer(self, requests, keys, cache) -> None:
        prompts = [self.key_prompt(r, key) for r in requests for key in r.keys]
        values = self.generate(prompts, seed=int(keys[0][:8], 16))
        position = 0
        for request, key in zip(requests, keys):
            fields = values[position:position + len(request.keys)]
            position += len(request.keys)
            content = json.dumps(dict(zip(request.keys, fields)), ensure_ascii=False)
            cache.put(key, Answer(content, "stop"))

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        """One line of visible text after each prompt (up to max_new_tokens), batched."""
        self._load()
        torch = self.torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        torch.manual_seed(seed)
        sample = self.settings["temperature"] > 0
        batch_size = self.settings["max_concurrency"]
        values = []
        for start in range(0, len(prompts), batch_size):
            batch = self.tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True).to(self.device)
            visible_first, stop_at_line_end, line = _one_line_controls(self.tokenizer, batch["input_ids"].shape[1])
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=self.settings["max_new_tokens"],
                    do_sample=sample,
                    temperature=self.settings["temperature"] if sample else None,
                    top_p=None,
                    top_k=None,
                    logits_processor=LogitsProcessorList([visible_first]),
                    stopping_criteria=StoppingCriteriaList([stop_at_line_end]),
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            values += [line(row).strip() for row in output]
        return values

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        self._load()
        torch = self.torch
        prompt_ids = self.tokenizer(prompt)["input_ids"]
        scores = []
        for text in continuations:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                scores.append(float("-inf"))
                continue
            input_ids = torch.tensor([prompt_ids + ids], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids).logits[0, len(prompt_ids) - 1:-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(ids, device=self.device)
            scores.append(logprobs.gather(1, target[:, None]).mean().item())
        return scores


def _model_fingerprint(model: str) -> str:
    """A local model directory's identity for the cache: a rebuilt model is a new model.

    Names, sizes and the first MiB of each file: cheap for a 7B model, and any change
    of weights shows in the first tensors.
    """
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size}:".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return f"{path.name}@{digest.hexdigest()[:16]}"



def _one_line_controls(tokenizer, prompt_length: int):
    """A logits processor and a stopping criterion for one line of visible text: no end of
    sequence before the first visible character (a weak model often ends at once), and a
    stop at the first newline after it. Returns them with the function that cuts the line."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    def line(row) -> str:
        return tokenizer.decode(row[prompt_length:], skip_special_tokens=True).lstrip().split("\n", 1)[0]

    def ended(row) -> bool:
        text = tokenizer.decode(row[prompt_length:], skip_special_tokens=True).lstrip()
        return "\n" in text

    class VisibleFirst(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for index, row in enumerate(input_ids):
                if not line(row).strip():
                    scores[index, tokenizer.eos_token_id] = -float("inf")
            return scores

    class StopAtLineEnd(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([ended(row) for row in input_ids], device=input_ids.device)

    return VisibleFirst(), StopAtLineEnd(), line
