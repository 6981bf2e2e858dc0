"""What goes into the LLM layer and what comes out: requests, answers, rejects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence


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
    # The mt backend's counts for the request (segments translated, sentences cut to the
    # model's limit): they go into the stage's report. None from the other backends.
    mt_counts: dict[str, int] | None = None


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
