"""The LLM cache's writer killed in its own process keeps every answer committed before the kill."""

import os
import time

from okapi_pipeline.llm import ResponseCache

KILLED_WRITER = """
import sys, time
from okapi_pipeline.llm.cache import ResponseCache
from okapi_pipeline.llm.requests import Answer
cache = ResponseCache(sys.argv[1])
for i in range(300):
    cache.put(f"k{i}", Answer("{}", "stop"))
cache.flush()
print("flushed", flush=True)
i = 300
while True:
    cache.put(f"k{i}", Answer("x" * 1000, "stop"))
    i += 1
    if i % 50 == 0:
        time.sleep(0.001)
"""


def test_a_killed_writer_keeps_every_answer_committed_before_the_kill(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "c.jsonl"
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "flushed"
    time.sleep(0.2)  # answers keep coming in, commits keep going out
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    answers = ResponseCache(path).answers  # a torn last line is ignored
    assert {f"k{i}" for i in range(300)} <= set(answers) and len(answers) > 300
