"""The client every stage calls: JSON requests through the cache to one backend."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from typing import Sequence

from okapi_pipeline.llm.backend import Backend
from okapi_pipeline.llm.cache import ResponseCache
from okapi_pipeline.llm.hf import HFBackend
from okapi_pipeline.llm.mt import MTBackend
from okapi_pipeline.llm.openai_api import OpenAIBackend
from okapi_pipeline.llm.requests import Answer, Check, JsonRequest, Rejected, messages, parse_json_answer

log = logging.getLogger(__name__)


class LLMClient:
    """Send JSON requests through the cache to one backend; ask again when unusable."""

    def __init__(self, settings: dict, cache_path, backend: "Backend"):
        self.settings = settings
        self.cache = ResponseCache(cache_path)
        self.backend = backend
        self.sent = 0
        # The mt backend's counts over the last answer of every request asked (see Answer).
        self.mt_counts: Counter = Counter()

    @classmethod
    def from_settings(cls, settings: dict, cache_path, threads: int = 1) -> "LLMClient":
        """`threads`: CPU threads of a local model (the rule's threads)."""
        kind = settings["backend"]
        if kind == "openai":
            backend = OpenAIBackend(settings)
        elif kind == "hf":
            backend = HFBackend(settings, threads)
        elif kind == "mt":
            backend = MTBackend(settings, threads)
        else:
            raise ValueError(f"unknown LLM backend '{kind}' (openai, hf or mt)")
        return cls(settings, cache_path, backend)

    def _key(self, request: JsonRequest, attempt: int) -> str:
        payload = {
            "backend": self.settings["backend"],
            "model": self.backend.model_id,
            "messages": messages(request),
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
        last: dict[int, Answer] = {}
        for attempt in range(self._attempts()):
            if not pending:
                break
            keys = {index: self._key(requests[index], attempt) for index in pending}
            to_send = [index for index in pending if self.cache.get(keys[index]) is None]
            if to_send:
                log.info(
                    "attempt %d: %d requests (%d answered from cache)",
                    attempt + 1,
                    len(to_send),
                    len(pending) - len(to_send),
                )
                self.backend.answer([requests[i] for i in to_send], [keys[i] for i in to_send], self.cache)
                self.sent += len(to_send)
            still = []
            for index in pending:
                answer = self.cache.get(keys[index])
                last[index] = answer
                value, reason = parse_json_answer(answer, requests[index].keys)
                if reason is None and check is not None:
                    reason = check(requests[index], value)
                if reason is None:
                    results[index] = value
                else:
                    results[index] = Rejected(reason, answer.content)
                    still.append(index)
            pending = still
        for answer in last.values():
            self.mt_counts.update(answer.mt_counts or {})
        return results

    def _attempts(self) -> int:
        # A local model at temperature 0 gives the same answer every time.
        if self.settings["backend"] in ("hf", "mt") and self.settings["temperature"] == 0:
            return 1
        return 1 + self.settings["max_retries"]

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Mean token log-probability of each continuation after the prompt (hf only)."""
        if not isinstance(self.backend, HFBackend):
            raise TypeError("score() needs the hf backend; the openai judge ranks with a prompt")
        return self.backend.score(prompt, continuations)

    def close(self) -> None:
        self.cache.close()
