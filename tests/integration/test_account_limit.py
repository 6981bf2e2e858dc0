"""API jobs of one account share its limits: `llm.api_jobs_at_once` job processes at once
against the fake server stay within the account's rate together."""

import json
import subprocess
import sys
import time

from okapi_pipeline.config import answer_settings, llm_settings, stage_llm_settings
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from tests.support.configs import openai_config
from tests.support.workflow import REPO

JOBS = 4


RECORDS_PER_JOB = 20


REQUESTS_PER_MINUTE = 1200


# One translate_shard job's client code, as scripts/translate_shard.py runs it, started
# together with the others once all are ready (imports take seconds on a busy machine).
JOB = """
import json, pathlib, sys, time
from okapi_pipeline.data.translate import translate_shard
settings, work, job = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(work / f"ready-{job}").touch()
while not (work / "go").exists():
    time.sleep(0.01)
translate_shard(work / f"en-{job}.jsonl", work / f"vi-{job}.jsonl", work / f"vi-{job}.rejects.jsonl",
                work / f"vi-{job}.report.json", "vi", sys.argv[4], settings, f"translation/vi/sft/{job}")
"""


def run_jobs_at_once(settings: dict, work) -> None:
    """JOBS translate_shard jobs in parallel processes, each with `settings`, started together."""
    work.mkdir()
    for job in range(JOBS):
        records = [
            {"id": f"alpaca-{i:05d}", "instruction": f"Job {job} asks for {i} tips.", "input": "", "output": "Sleep."}
            for i in range(RECORDS_PER_JOB)
        ]
        write_jsonl(work / f"en-{job}.jsonl", records)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, json.dumps(settings), str(work), str(job), str(REPO / "prompts/translate.txt")],
            cwd=REPO,
        )
        for job in range(JOBS)
    ]
    deadline = time.monotonic() + 120
    while len(list(work.glob("ready-*"))) < JOBS and time.monotonic() < deadline:
        time.sleep(0.05)
    (work / "go").touch()
    assert [process.wait(timeout=120) for process in processes] == [0] * JOBS
    assert all(len(read_jsonl(work / f"vi-{job}.jsonl")) == RECORDS_PER_JOB for job in range(JOBS))


def peak(arrivals: list[float], window_s: float) -> int:
    """The most requests that arrived within any `window_s` seconds."""
    return max(sum(1 for t in arrivals[i:] if t < start + window_s) for i, start in enumerate(arrivals))


def test_api_jobs_at_once_together_stay_within_the_account_limit(fake_openai, openai_settings, tmp_path):
    config = openai_config(
        fake_openai.base_url, tmp_path / "cache", requests_per_minute=REQUESTS_PER_MINUTE, api_jobs_at_once=JOBS
    )
    answer_params = answer_settings(llm_settings(config, "translation"))  # the rule's params
    shared = stage_llm_settings(config, "translation", answer_params)
    assert shared["requests_per_minute"] == REQUESTS_PER_MINUTE / JOBS

    run_jobs_at_once(shared, tmp_path / "shared")
    arrivals = sorted(fake_openai.arrivals)
    assert len(arrivals) == JOBS * RECORDS_PER_JOB
    # The limiter's guarantee: any t seconds hold at most limit * (t + 1) / 61 requests
    # (exactly the limit in any minute); a few seconds stand in for the minute, with one
    # request a job for arrivals bunched by the network.
    window_s = 2.0
    bound = REQUESTS_PER_MINUTE * (window_s + 1) / 61 + JOBS
    assert peak(arrivals, window_s) <= bound

    # Each job at the full limit, as before the share: the same jobs ask far more.
    fake_openai.arrivals.clear()
    config["llm"]["cache_dir"] = str(tmp_path / "cache-full")
    run_jobs_at_once({**shared, **llm_settings(config, "translation")}, tmp_path / "full")
    assert peak(sorted(fake_openai.arrivals), window_s) > bound
