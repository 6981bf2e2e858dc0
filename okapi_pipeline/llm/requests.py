"""What goes into the LLM layer and what comes out: requests, answers, rejects, the settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

# Settings that change no answer (how fast, where cached, what it may cost): kept out of
# the rule params, so a new rate limit or a higher budget reruns no finished job.
OPERATIONAL_SETTINGS = (
    "api_key_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "cache_dir",
    "mode",
    "batch_poll_s",
    "price_input_per_1k",
    "price_output_per_1k",
    "budget_usd",
    "max_reject_share",
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


@dataclass
class Answer:
    content: str
    finish_reason: str


# A stage-level check of a parsed answer: None when usable, else the reason.
Check = Callable[[JsonRequest, dict], "str | None"]


def messages(request: JsonRequest) -> list[dict]:
    """The chat messages of a request (the same in the cache key and on the wire)."""
    system = [{"role": "system", "content": request.system}] if request.system else []
    return system + [{"role": "user", "content": request.user_text()}]


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
