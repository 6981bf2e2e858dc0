"""The persistent response cache: one append-only JSONL file per (stage, language, shard).

Keyed by a SHA-256 of the full request, it lives outside Snakemake's outputs, so a
killed or rerun job never sends an answered request again. Files, not SQLite, because
many jobs on many nodes share the filesystem.

Answers are written by a writer thread in group commits: woken by the first answer,
it gathers answers for GROUP_COMMIT_S, appends them in one write and fsyncs once,
while the caller (the event loop of the online backend) goes on without a lock or a
system call. A SIGKILL loses at most the answers of the last few milliseconds (the
gathering and the commit in flight), which a rerun asks again; `close()` and
`flush()` wait until every answer is on disk.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from okapi_pipeline.llm.requests import Answer

log = logging.getLogger(__name__)

# How long the writer gathers answers before a commit: the most a SIGKILL loses, with the
# commit's own write and fsync.
GROUP_COMMIT_S = 0.005
_OPEN: "weakref.WeakSet[ResponseCache]" = weakref.WeakSet()


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
        # One thread puts (the event loop, or a local model's loop); the writer thread
        # takes from the other end of the deque.
        self._pending: deque[tuple[str, Answer]] = deque()
        self._queued = 0  # answers put
        self._written = 0  # answers put and on disk
        self._wake = threading.Event()
        self._committed = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._error: BaseException | None = None

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                self.answers[entry["key"]] = Answer(entry["content"], entry["finish_reason"], entry.get("mt_counts"))
            except (json.JSONDecodeError, KeyError, TypeError):
                # A job killed mid-write leaves a partial last line; its request is asked again.
                log.warning("cache %s: ignoring unreadable line %d", self.path, number)
        log.info("cache %s: %d answers loaded", self.path, len(self.answers))

    def get(self, key: str) -> Answer | None:
        return self.answers.get(key)

    def put(self, key: str, answer: Answer) -> None:
        """Keep the answer and queue it for the next group commit: no lock, no wait."""
        if self._error is not None:
            self._raise_writer_error()
        if self._writer is None:
            self._start_writer()
        self.answers[key] = answer
        self._pending.append((key, answer))
        self._queued += 1
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Wait until every answer put so far is on disk."""
        target = self._queued
        self._wake.set()
        with self._committed:
            while self._written < target and self._error is None and self._writer is not None:
                self._committed.wait(0.1)
        self._raise_writer_error()

    def close(self) -> None:
        if self._writer is not None:
            self._closing = True
            self._wake.set()
            self._writer.join()
            self._writer, self._closing = None, False
        _OPEN.discard(self)
        self._raise_writer_error()

    def _start_writer(self) -> None:
        handle = open(self.path, "a", encoding="utf-8")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            handle.write("\n")
        self._writer = threading.Thread(
            target=self._write_loop, args=(handle,), daemon=True, name=f"cache writer {self.path.name}"
        )
        self._writer.start()
        _OPEN.add(self)

    def _write_loop(self, handle) -> None:
        """Sleep until answers come, gather them for GROUP_COMMIT_S, append and fsync them at once."""
        try:
            while True:
                self._wake.wait()
                if not self._closing:
                    time.sleep(GROUP_COMMIT_S)
                self._wake.clear()
                # Read after the clear: a close() that set the event before it is seen here,
                # one after it wakes the next wait.
                closing = self._closing
                batch = [self._pending.popleft() for _ in range(len(self._pending))]
                if batch:
                    handle.write(
                        "".join(json.dumps(_entry(key, answer), ensure_ascii=False) + "\n" for key, answer in batch)
                    )
                    handle.flush()
                    os.fsync(handle.fileno())
                    with self._committed:
                        self._written += len(batch)
                        self._committed.notify_all()
                if closing and not self._pending:
                    return
        except BaseException as error:  # noqa: BLE001 - raised in the thread that puts, flushes or closes
            self._error = error
        finally:
            handle.close()
            with self._committed:
                self._committed.notify_all()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise OSError(f"cache {self.path}: writing answers failed: {self._error}") from self._error


def _entry(key: str, answer: Answer) -> dict:
    entry = {"key": key, "content": answer.content, "finish_reason": answer.finish_reason}
    if answer.mt_counts is not None:
        entry["mt_counts"] = answer.mt_counts
    return entry


@atexit.register
def _close_open_caches() -> None:
    """Flush the caches a caller forgot to close (the writer thread is a daemon)."""
    for cache in list(_OPEN):
        cache.close()
