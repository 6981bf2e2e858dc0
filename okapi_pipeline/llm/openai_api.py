"""The `openai` backend: the official client against any OpenAI-compatible server.

Online, requests run concurrently (up to max_concurrency) paced to the RPM/TPM limits
with aiolimiter; the openai client retries 429 (honouring Retry-After), 5xx, timeouts
and dropped connections. `mode: batch` sends the same requests through the OpenAI
Batch API instead (okapi_pipeline.llm.batch), into the same cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from okapi_pipeline.llm.backend import Backend
from okapi_pipeline.llm.batch import answer_in_batches
from okapi_pipeline.llm.budget import token_counter
from okapi_pipeline.llm.errors import MissingApiKey
from okapi_pipeline.llm.requests import Answer, JsonRequest, messages

log = logging.getLogger(__name__)

CONNECTIONS_PER_CLIENT = 32


class OpenAIBackend(Backend):
    def __init__(self, settings: dict):
        variable = settings["api_key_env"]
        if not os.environ.get(variable):
            raise MissingApiKey(f"the API key is missing: set the environment variable {variable} (llm.api_key_env)")
        self.settings = settings
        self.model_id = settings["model"]

    def client_options(self) -> dict:
        # The client retries 429 (honouring Retry-After up to two minutes), 5xx,
        # timeouts and dropped connections itself, with exponential backoff.
        return {
            "api_key": os.environ[self.settings["api_key_env"]],
            "base_url": self.settings["base_url"],
            "max_retries": self.settings["max_retries"],
            "timeout": self.settings["timeout_s"],
        }

    def body(self, request: JsonRequest) -> dict:
        """The chat-completions request body, the same online and in a batch file."""
        return {
            "model": self.model_id,
            "messages": messages(request),
            "temperature": self.settings["temperature"],
            "max_completion_tokens": self.settings["max_new_tokens"],
            "response_format": {"type": "json_object"},
        }

    def answer(self, requests, keys, cache) -> None:
        if self.settings["mode"] == "batch":
            answer_in_batches(self.client_options(), [self.body(r) for r in requests], keys, cache, self.settings)
        else:
            asyncio.run(self._answer_all(requests, keys, cache))

    async def _answer_all(self, requests, keys, cache) -> None:
        """max_concurrency workers take the requests in turn, each paced by the limits.

        The body goes to the endpoint as it is (no per-request transform of the typed
        client) and the answer is read from the JSON (no response model): at thousands
        of requests a second that is most of the client's CPU time. The workers share
        clients of up to CONNECTIONS_PER_CLIENT connections each: a connection pool scans
        all of its connections for every request it sends.
        """
        # Lazy: the HTTP stack loads only in a job that sends requests.
        import httpx2
        from openai import AsyncOpenAI, BadRequestError, DefaultAsyncHttpxClient
        from tqdm import tqdm

        workers = min(self.settings["max_concurrency"], len(requests))
        # One TLS context (the client's default) for all of them: loading the CA
        # certificates takes a tenth of a second each time.
        verify = httpx2.create_ssl_context()
        clients = [
            AsyncOpenAI(**self.client_options(), http_client=DefaultAsyncHttpxClient(verify=verify))
            for _ in range(-(-workers // CONNECTIONS_PER_CLIENT))
        ]
        limits = _Limits(self.settings["requests_per_minute"], self.settings["tokens_per_minute"])
        work = [
            (body, key, estimate_tokens(body["messages"], self.model_id) + body["max_completion_tokens"])
            for body, key in zip((self.body(r) for r in requests), keys)
        ]
        prompt_tokens = sum(cost - body["max_completion_tokens"] for body, _, cost in work)
        log.info(
            "%d requests to %s: about %d prompt tokens, at most %d completion tokens",
            len(requests),
            self.model_id,
            prompt_tokens,
            len(requests) * self.settings["max_new_tokens"],
        )
        name = "/".join(cache.path.with_suffix("").parts[-3:])
        progress = tqdm(total=len(requests), desc=name, unit="req", mininterval=5, file=sys.stderr)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        queue = iter(work)

        async def worker(client) -> None:
            for body, key, tokens in queue:
                await limits.wait(tokens)
                try:
                    text = await client.post("/chat/completions", body=body, cast_to=str)
                except BadRequestError as error:
                    # This request, not the setup, is at fault (too long, filtered):
                    # reject it and go on. Other errors end the job after the retries.
                    cache.put(key, Answer(str(error.message), "refused"))
                    progress.update()
                    continue
                response = json.loads(text)
                choice = response["choices"][0]
                cache.put(
                    key, Answer((choice.get("message") or {}).get("content") or "", choice.get("finish_reason") or "")
                )
                if response.get("usage"):
                    usage["prompt_tokens"] += response["usage"].get("prompt_tokens", 0)
                    usage["completion_tokens"] += response["usage"].get("completion_tokens", 0)
                progress.update()

        try:
            await asyncio.gather(*(worker(clients[index % len(clients)]) for index in range(workers)))
        finally:
            await asyncio.gather(*(client.close() for client in clients))
            progress.close()
            log.info("tokens used: %d prompt, %d completion", usage["prompt_tokens"], usage["completion_tokens"])


def estimate_tokens(messages: list[dict], model: str) -> int:
    """The prompt's tokens as `model`'s tokenizer counts them (tiktoken, else about 4
    characters a token; okapi_pipeline.llm.budget), plus a few per message."""
    count = token_counter(model)
    return sum(count(m["content"]) + 4 for m in messages)


class _Limits:
    """Paces request starts to the requests- and tokens-per-minute limits (leaky buckets).

    Both are metered in one-second windows, so a minute's allowance never arrives as
    one burst; a request larger than a second's tokens counts as a second's worth.
    Any 60 seconds hold at most the limit, the first second's burst included: a job
    that paces itself to its share of an account's limit keeps the account within it.
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
    """A bucket of `burst` that refills at (per_minute - burst) a minute: any window of t
    seconds holds at most burst + (per_minute - burst) * t / 60, so a minute at most
    per_minute. (At most 1 a minute: the first at once, then one each 60 / per_minute s.)"""
    from aiolimiter import AsyncLimiter  # lazy, as the HTTP stack

    if not per_minute:
        return None
    burst = max(1.0, per_minute / 61)
    if per_minute <= burst:
        return AsyncLimiter(1.0, 60 / per_minute)
    return AsyncLimiter(burst, 60 * burst / (per_minute - burst))
