"""The translation stage through Snakemake against the fake server: a job killed halfway
repeats no answered request on rerun, and the key appears in no file."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from okapi_pipeline.jsonl import read_jsonl
from tests.support.fake_openai import CANARY_KEY, FakeOpenAI, files_containing
from tests.support.workflow import copy_workflow, snakemake

# ---- the whole workflow: SIGKILL halfway, rerun, and the canary key --------------------


def count_translations(bodies) -> list[str]:
    return [
        json.dumps(b["messages"], sort_keys=True) for b in bodies if "into Vietnamese" in b["messages"][0]["content"]
    ]


def test_a_killed_translation_job_repeats_no_answered_request_and_the_key_stays_secret(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    fake = FakeOpenAI().start()
    try:
        overrides = {
            "languages": ["vi"],
            "split": {
                "sft": {"sources": ["alpaca"], "size": 40},
                "rm": {"sources": ["self_instruct"], "size": 4},
                "ppo": {"sources": ["self_instruct"], "size": 4},
            },
            "translation": {"items_per_shard": 40},
            "self_instruct": {"count": 8, "max_attempts": 40},
            "llm": {
                "backend": "openai",
                "base_url": fake.base_url,
                "model": "fake",
                "api_key_env": "OKAPI_TEST_KEY",
                "max_concurrency": 2,
                "budget_usd": None,
                "answer_checks": "basic",
                "max_reject_share": 0.5,
            },
        }
        (work / "override.yaml").write_text(yaml.safe_dump(overrides))
        target = "results/data/vi/sft/shards/0000.jsonl"
        args = ["--configfile", "override.yaml", "--cores", "1", target]
        snakemake(work, *args, "--until", "split_instructions", env={"OKAPI_TEST_KEY": CANARY_KEY})
        # Priced over budget: the paid job refuses before any request, in one line.
        (work / "paid.yaml").write_text(
            yaml.safe_dump({"llm": {**overrides["llm"], "budget_usd": 0.0, "price_input_per_1k": 0.5}})
        )
        refused = snakemake(
            work,
            "--configfile",
            "override.yaml",
            "paid.yaml",
            "--cores",
            "1",
            target,
            check=False,
            env={"OKAPI_TEST_KEY": CANARY_KEY},
        )
        assert refused.returncode != 0 and count_translations(fake.requests) == [], refused.stdout + refused.stderr
        last = (work / "logs/translate/vi/sft/0000.log").read_text().splitlines()[-1]
        assert last.startswith("translation: the estimated cost $") and "set llm.budget_usd" in last, last
        fake.latency = 0.1
        before = len(count_translations(fake.answered))
        env = dict(os.environ, OKAPI_TEST_KEY=CANARY_KEY, HF_HUB_OFFLINE="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while len(count_translations(fake.answered)) - before < 16 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        answered = set(count_translations(fake.answered))
        assert 16 <= len(answered) < 40
        fake.latency = 0.0
        first = len(fake.requests)
        snakemake(work, *args, "--unlock")
        snakemake(work, *args, "--rerun-incomplete", env={"OKAPI_TEST_KEY": CANARY_KEY})
        repeated = answered & set(count_translations(fake.requests[first:]))
        assert len(repeated) <= 2  # at most the requests in flight (max_concurrency)
        assert len(read_jsonl(work / target)) == 40
        # New limits or a new budget change no answer: nothing reruns.
        (work / "faster.yaml").write_text(
            yaml.safe_dump(
                {"llm": {**overrides["llm"], "max_concurrency": 16, "requests_per_minute": 100, "budget_usd": 5}}
            )
        )
        plan = snakemake(work, "--configfile", "override.yaml", "faster.yaml", "-n", target)
        assert "Nothing to be done" in plan.stdout + plan.stderr
    finally:
        fake.stop()
    assert fake.authorizations[-1] == f"Bearer {CANARY_KEY}"
    leaks = [
        path
        for folder in ("results", "logs", ".snakemake", ".cache")
        if (work / folder).exists()
        for path in files_containing(work / folder, CANARY_KEY)
    ]
    assert leaks == []
