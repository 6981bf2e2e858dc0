"""The `mt` backend in its own process: a killed MT job resumes without translating cached
segments again."""

import json
import os
import signal
import subprocess
import sys
import time

from okapi_pipeline.data.translate import translate_shard
from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.llm.segments import segments
from tests.support.configs import mt_settings
from tests.support.workflow import REPO


def shard_records(n):
    return [
        {
            "id": f"r{i}",
            "instruction": f"Give {i} tips for staying healthy. Eat {i} apples. Sleep {i} hours.",
            "input": "",
            "output": f"Drink {i} glasses. Walk {i} miles. Rest {i} hours. Read {i} books.",
        }
        for i in range(n)
    ]


KILLED_JOB = """
import sys
from okapi_pipeline.data.translate import translate_shard
import json
args = json.loads(sys.argv[1])
translate_shard(*args["positional"], args["settings"], "translation/vi/sft/0000", threads=1)
"""


def segment_lines(cache_path):
    if not cache_path.exists():
        return []
    keys = []
    for line in cache_path.read_text(encoding="utf-8").splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError):
            pass  # the line being written when the job was killed
    return [key for key in keys if key.startswith("segment:")]


def test_a_killed_mt_job_resumes_without_translating_cached_segments_again(tiny_nllb_dir, tmp_path):
    records = shard_records(40)  # 40 x 7 = 280 segments, each translated once
    write_jsonl(tmp_path / "en.jsonl", records)
    settings = mt_settings(tiny_nllb_dir, tmp_path, max_concurrency=1)
    positional = [
        str(tmp_path / "en.jsonl"),
        str(tmp_path / "vi.jsonl"),
        str(tmp_path / "rejects.jsonl"),
        str(tmp_path / "report.json"),
        "vi",
        str(REPO / "prompts/translate.txt"),
    ]
    cache = tmp_path / "cache" / "translation/vi/sft/0000.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_JOB, json.dumps({"positional": positional, "settings": settings})],
        cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(segment_lines(cache)) < 30 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = set(segment_lines(cache))
    total = sum(len(segments(r["instruction"])) + len(segments(r["output"])) for r in records)
    assert 30 <= len(done) < total, "the job was not killed halfway"
    assert not (tmp_path / "report.json").exists()

    from okapi_pipeline.llm import mt

    translated = []
    original = mt.MTBackend.translate_segments

    def spy(self, missing, cache):
        translated.extend(missing)
        return original(self, missing, cache)

    mt.MTBackend.translate_segments = spy
    try:
        report = translate_shard(*positional, settings, "translation/vi/sft/0000")
    finally:
        mt.MTBackend.translate_segments = original
    assert not done & set(translated)  # nothing finished before the kill was translated again
    assert len(done) + len(translated) == total == report["segments"]["segments"]
    assert report["total"] == 40 and report["rejected"] == 40  # random weights: every answer truncated
    keys = segment_lines(cache)
    assert len(keys) == len(set(keys)) == total
