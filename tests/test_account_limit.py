"""API jobs of one account share its limits: `llm.api_jobs_at_once` jobs at once, each at that share."""

import json
import re
import subprocess
import sys
import time

import pytest
import yaml

from okapi_pipeline.config import (
    ConfigError,
    account_share,
    answer_settings,
    llm_settings,
    load_schema,
    stage_llm_settings,
    validate_config,
)
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from tests.fake_openai import KEY_VARIABLE
from tests.workflow import REPO, copy_workflow, snakemake

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


def demo_config(**llm) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["llm"].update(llm)
    return validate_config(config, load_schema())


def openai_config(base_url, cache_dir, **llm) -> dict:
    return demo_config(
        backend="openai",
        model="fake-model",
        base_url=base_url,
        api_key_env=KEY_VARIABLE,
        cache_dir=str(cache_dir),
        **llm,
    )


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


@pytest.mark.slow
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


def test_the_share_divides_both_limits_and_changes_no_rule_param(tmp_path):
    config = openai_config(
        "http://127.0.0.1:9/v1", tmp_path, requests_per_minute=3500, tokens_per_minute=90000, api_jobs_at_once=5
    )
    settings = account_share(config, llm_settings(config, "translation"))
    assert (settings["requests_per_minute"], settings["tokens_per_minute"]) == (700, 18000)
    # Neither where API jobs run nor how many at once shapes an answer: no finished job reruns.
    other = openai_config(
        "http://127.0.0.1:9/v1", tmp_path, requests_per_minute=3500, api_jobs="cluster", api_jobs_at_once=2
    )
    assert answer_settings(llm_settings(other, "translation")) == answer_settings(llm_settings(config, "translation"))
    # No limit stays no limit.
    unlimited = openai_config("http://127.0.0.1:9/v1", tmp_path)
    assert account_share(unlimited, llm_settings(unlimited, "ranking"))["requests_per_minute"] is None


def test_a_stage_may_not_set_its_own_api_jobs():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["translation"]["llm"] = {"api_jobs_at_once": 2}
    with pytest.raises(ConfigError, match=r"^config: 'translation.llm.api_jobs_at_once': set it in the top-level"):
        validate_config(config, load_schema())


@pytest.mark.slow
def test_api_jobs_on_the_cluster_take_an_api_slot_in_the_api_partition(tmp_path):
    work = copy_workflow(tmp_path / "work")
    overrides = {"llm": {"api_jobs": "cluster"}, "translation": {"llm": {"backend": "openai", "model": "m"}}}
    (work / "api.yaml").write_text(yaml.safe_dump(overrides))
    env = {"OKAPI_API_PARTITION": "net", "OKAPI_GPU_PARTITION": "gpu"}
    plan = snakemake(work, "-n", "--configfile", "api.yaml", env=env).stdout
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", plan, re.MULTILINE)
    shards = [resources for rule, resources in jobs if rule == "translate_shard"]
    assert shards and all("api_jobs=1" in r and "slurm_partition=net" in r for r in shards)
    # The local-model stages keep their GPU in the GPU partition.
    self_instruct = [resources for rule, resources in jobs if rule == "self_instruct"]
    assert self_instruct and "gpu=1" in self_instruct[0] and "slurm_partition=gpu" in self_instruct[0]
