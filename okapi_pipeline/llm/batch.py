"""The OpenAI Batch API as a transport of the LLM layer: the same requests, the same cache.

Requests go up as one JSONL file (one chat-completions request per line, keyed by
`custom_id` = the cache key); that file is also the input format of `vllm run-batch`.
The batch id (and the server it went to) is remembered next to the cache, so a killed
job polls the batch it has already paid for instead of submitting it again; a saved
batch that another server, key or project no longer knows (404) is dropped with a
warning and the open requests are submitted anew. Lines that failed or expired are
resubmitted on their own; a request refused as bad (400) is rejected like online.
"""

import json
import logging
import time
from pathlib import Path

from okapi_pipeline.llm.cache import ResponseCache
from okapi_pipeline.llm.errors import RERUN, BatchFailed, BatchRoundsExhausted
from okapi_pipeline.llm.requests import Answer

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")
MAX_POLL_S = 600.0


def request_lines(bodies: list[dict], keys: list[str]) -> list[dict]:
    """Batch input lines; `vllm run-batch -i FILE -o OUT --model M` reads the same file."""
    return [{"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body} for key, body in zip(keys, bodies)]


def answer_in_batches(
    client_options: dict, bodies: list[dict], keys: list[str], cache: ResponseCache, settings: dict
) -> None:
    from openai import OpenAI  # lazy: openai loads only in a job that sends requests

    client = OpenAI(**client_options)
    input_path = cache.path.with_name(cache.path.stem + ".batch-input.jsonl")
    state_path = cache.path.with_name(cache.path.stem + ".batch.json")
    pending = {key: body for key, body in zip(keys, bodies) if cache.get(key) is None}
    rounds = 1 + settings["max_retries"]
    for _ in range(rounds):
        if not pending:
            break
        batch_id = _saved_batch(client, state_path)
        if batch_id is None:
            batch_id = _submit(client, pending, input_path)
            state_path.write_text(json.dumps({"batch_id": batch_id, "base_url": str(client.base_url)}))
        batch = _wait(client, batch_id, settings["batch_poll_s"])
        if batch.status == "failed":
            state_path.unlink()
            raise BatchFailed(
                f"batch {batch_id} failed: {batch.errors}; fix what the errors name (llm.model, the request "
                f"size), then {RERUN}"
            )
        answered = _collect(client, batch, cache)
        cache.flush()  # on disk before the batch is forgotten: a kill now pays for nothing twice
        state_path.unlink()
        pending = {key: body for key, body in pending.items() if cache.get(key) is None}
        log.info("batch %s %s: %d answers; %d requests still open", batch_id, batch.status, answered, len(pending))
    if pending:
        raise BatchRoundsExhausted(
            f"{len(pending)} requests still unanswered after {rounds} batches (expired or failed lines); "
            f"{RERUN}, only the open ones are resubmitted (or raise llm.max_retries for more rounds)"
        )


def _saved_batch(client, state_path: Path) -> str | None:
    """The batch a killed job submitted, if this server still knows it; else forget it."""
    from openai import NotFoundError  # lazy, as above

    if not state_path.exists():
        return None
    saved = json.loads(state_path.read_text())
    batch_id, base_url = saved["batch_id"], saved.get("base_url")
    if base_url not in (None, str(client.base_url)):
        log.warning(
            "batch %s was submitted to %s, not %s: submitting the open requests again",
            batch_id,
            base_url,
            client.base_url,
        )
    else:
        try:
            client.batches.retrieve(batch_id)
            log.info("resuming batch %s", batch_id)
            return batch_id
        except NotFoundError:
            log.warning(
                "the server does not know batch %s (another key, project or server since it was "
                "saved): submitting the open requests again",
                batch_id,
            )
    state_path.unlink()
    return None


def _submit(client, pending: dict, input_path: Path) -> str:
    with open(input_path, "w", encoding="utf-8") as handle:
        for line in request_lines(list(pending.values()), list(pending)):
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    with open(input_path, "rb") as handle:
        uploaded = client.files.create(file=handle, purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
    log.info("submitted batch %s: %d requests", batch.id, len(pending))
    return batch.id


def _wait(client, batch_id: str, poll_s: float):
    """Poll with a growing interval until the batch is done."""
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in DONE:
            return batch
        counts = batch.request_counts
        log.info(
            "batch %s %s%s", batch_id, batch.status, f": {counts.completed} of {counts.total} done" if counts else ""
        )
        time.sleep(poll_s)
        poll_s = min(poll_s * 1.5, MAX_POLL_S)


def _collect(client, batch, cache: ResponseCache) -> int:
    """Put every usable line of the output and error files into the cache."""
    answered = 0
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for text in client.files.content(file_id).text.splitlines():
            if not text.strip():
                continue
            line = json.loads(text)
            key, response = line["custom_id"], line.get("response") or {}
            if cache.get(key) is not None:
                continue
            if response.get("status_code") == 200:
                choice = response["body"]["choices"][0]
                cache.put(key, Answer(choice["message"].get("content") or "", choice.get("finish_reason") or ""))
                answered += 1
            elif response.get("status_code") == 400:
                message = (response.get("body") or {}).get("error", {}).get("message", "bad request")
                cache.put(key, Answer(message, "refused"))
                answered += 1
    return answered
