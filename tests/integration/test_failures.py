"""Expected failures of an LLM job end its process with status 1 and one line saying what
to do next, in the log and on the console; a bug keeps its traceback."""

import json
import socket
import subprocess
import sys
import textwrap

from tests.support.workflow import REPO

# A job script as the rules run one: stderr into the log, the work inside the handler.
JOB_SCRIPT = """\
import json, logging, sys
sys.stderr = open({log!r}, "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from okapi_pipeline.llm import BudgetCheck, JsonRequest, exit_on_user_error, run_llm_job
settings = json.loads({settings!r})
requests = [JsonRequest("Into German.", {{"instruction": f"Hello {{i}}"}}, ("instruction",)) for i in range(2)]

def work(clients):
    results = clients("job").json_requests(requests)
    return len(results), [{{"reason": "unusable"}} for result in results]

with exit_on_user_error():
{work}
"""


def run_job(tmp_path, settings: dict, work: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `work` (Python, inside the handler) as a job script; the process and its log's lines."""
    log = tmp_path / "job.log"
    script = tmp_path / "job.py"
    script.write_text(
        JOB_SCRIPT.format(log=str(log), settings=json.dumps(settings), work=textwrap.indent(work, "    "))
    )
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    return result, log.read_text().splitlines()


def assert_one_line(result, log_lines, *phrases):
    """Exit status 1, one line on the console, the same line last in the log, no traceback."""
    console = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(console) == 1 and log_lines[-1] == console[0], (console, log_lines[-3:])
    assert not any("Traceback" in line for line in log_lines + console)
    for phrase in phrases:
        assert phrase in console[0]


RUN_JOB = 'run_llm_job("job", settings, "job", work)'


def test_batches_that_keep_expiring_end_in_one_line_that_says_rerun(fake_openai, openai_settings, tmp_path):
    openai_settings.update(mode="batch", max_retries=1)
    fake_openai.batch_faults = [("expire",)] * 4  # 2 requests, 2 rounds: none answered
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, "2 requests still unanswered after 2 batches", "rerun: answered requests are cached")
    assert len(fake_openai.batches) == 2


def test_a_budget_reached_ends_in_one_line_that_names_the_key_to_raise(fake_openai, openai_settings, tmp_path):
    openai_settings.update(price_input_per_1k=100.0, price_output_per_1k=100.0, budget_usd=0.01)
    work = 'run_llm_job("job", settings, "job", work, budget=BudgetCheck(requests=requests))'
    result, log = run_job(tmp_path, openai_settings, work)
    assert_one_line(result, log, "exceeds budget_usd $0.01", "set llm.budget_usd to at least")
    assert fake_openai.count == 0  # refused before any request


def test_a_server_that_keeps_answering_429_ends_in_one_line_that_says_lower_the_rate(
    fake_openai, openai_settings, tmp_path
):
    openai_settings.update(max_retries=1, max_concurrency=1)
    fake_openai.faults = [("429", 0)] * 2
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, "429 (rate limit)", "lower llm.requests_per_minute", "rerun")
    assert fake_openai.count == 2


def test_a_server_that_keeps_failing_ends_in_one_line_that_says_wait_and_rerun(fake_openai, openai_settings, tmp_path):
    openai_settings.update(max_retries=1, max_concurrency=1)
    fake_openai.faults = [("500",)] * 2
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, "kept failing with 500", "rerun: answered requests are cached")


def test_a_server_out_of_reach_ends_in_one_line_that_names_base_url(openai_settings, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    openai_settings.update(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, "no answer from the server", "check llm.base_url")


def test_too_many_rejected_answers_end_in_one_line_that_names_max_reject_share(fake_openai, openai_settings, tmp_path):
    openai_settings.update(max_reject_share=0.5)
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, "2 of 2 items rejected", "raise llm.max_reject_share")


def test_a_missing_api_key_ends_in_one_line_that_names_the_variable(openai_settings, tmp_path, monkeypatch):
    monkeypatch.delenv(openai_settings["api_key_env"])
    result, log = run_job(tmp_path, openai_settings, RUN_JOB)
    assert_one_line(result, log, f"set the environment variable {openai_settings['api_key_env']}")


def test_a_bug_keeps_its_traceback(openai_settings, tmp_path):
    result, log = run_job(tmp_path, openai_settings, 'raise KeyError("a bug")')
    assert result.returncode == 1 and "Traceback" in "\n".join(log) and "KeyError: 'a bug'" in log[-1]
