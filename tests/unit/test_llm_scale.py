"""The LLM layer at scale: faults, pacing, Batch API, answer checks, reject gate, cost gate, QA."""

import csv
import json
import time

import pytest
import yaml

from okapi_pipeline.config import llm_defaults
from okapi_pipeline.data.translate import translate_shard, translation_qa
from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.llm import JsonRequest, LLMClient, TooManyRejects
from okapi_pipeline.llm.batch import request_lines
from okapi_pipeline.llm.budget import BudgetExceeded, check_stage_budget
from okapi_pipeline.llm.checks import translation_problem
from okapi_pipeline.report.cost import TOKEN_COLUMNS, config_estimate, estimate_costs, write_rows
from tests.support.fake_openai import CANARY_KEY, fake_translation
from tests.support.workflow import REPO

PROMPTS = REPO / "prompts"


SYSTEM = "Translate every string value of the JSON object from English into German."


def requests(n: int) -> list[JsonRequest]:
    return [JsonRequest(SYSTEM, {"instruction": f"Say hello {i}"}, ("instruction",)) for i in range(n)]


def run(settings, cache_path, reqs, check=None):
    client = LLMClient.from_settings(settings, cache_path)
    try:
        return client.json_requests(reqs, check=check), client.sent
    finally:
        client.close()


def test_timeouts_and_dropped_connections_are_retried(fake_openai, openai_settings, tmp_path):
    openai_settings.update(timeout_s=0.3, max_concurrency=1)
    fake_openai.faults = [("delay", 0.6), ("drop",)]
    results, _ = run(openai_settings, tmp_path / "c.jsonl", requests(2))
    assert all(isinstance(r, dict) for r in results)
    assert len(fake_openai.answered) == 2 and fake_openai.count == 4


def test_tokens_per_minute_paces_the_requests(fake_openai, openai_settings, tmp_path):
    # Each request holds about 30 prompt + 100 completion tokens; 60,000 a minute is
    # 1,000 a second: 7 requests a second.
    openai_settings.update(tokens_per_minute=60000, max_new_tokens=100, max_concurrency=20)
    start = time.monotonic()
    run(openai_settings, tmp_path / "c.jsonl", requests(15))
    assert time.monotonic() - start >= 0.9


def test_batch_mode_resubmits_only_failed_lines_and_fills_the_same_cache(fake_openai, openai_settings, tmp_path):
    openai_settings["mode"] = "batch"
    fake_openai.batch_faults = [None, ("500",), None, ("expire",), None]
    cache = tmp_path / "cache" / "b.jsonl"
    results, sent = run(openai_settings, cache, requests(5))
    assert [r["instruction"] for r in results] == [fake_translation(f"Say hello {i}", "German") for i in range(5)]
    assert len(fake_openai.batches) == 2 and fake_openai.count == 7  # 5 lines, then the 2 that failed
    lines = [json.loads(x) for x in (tmp_path / "cache" / "b.batch-input.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"custom_id", "method", "url", "body"}
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["model"] == "fake-model"
    # Online, the same requests are answered from the cache that the batch filled.
    openai_settings["mode"] = "online"
    again, sent = run(openai_settings, cache, requests(5))
    assert sent == 0 and again == results


def test_a_killed_batch_job_polls_its_batch_instead_of_paying_again(fake_openai, openai_settings, tmp_path):
    openai_settings["mode"] = "batch"
    client = LLMClient.from_settings(openai_settings, tmp_path / "b.jsonl")
    bodies = [client.backend.body(r) for r in requests(3)]
    keys = [client._key(r, 0) for r in requests(3)]
    client.close()
    from openai import OpenAI

    # A job submitted its batch and was killed before collecting it.
    api = OpenAI(api_key=CANARY_KEY, base_url=fake_openai.base_url)
    write_jsonl(tmp_path / "in.jsonl", request_lines(bodies, keys))
    uploaded = api.files.create(file=open(tmp_path / "in.jsonl", "rb"), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    (tmp_path / "b.batch.json").write_text(json.dumps({"batch_id": batch.id}))
    results, _ = run(openai_settings, tmp_path / "b.jsonl", requests(3))
    assert all(isinstance(r, dict) for r in results)
    assert len(fake_openai.batches) == 1 and not (tmp_path / "b.batch.json").exists()


@pytest.mark.parametrize(
    "saved",
    [
        {"batch_id": "batch_unknown"},  # the server answers 404: another key or project since the kill
        {"batch_id": "batch_elsewhere", "base_url": "https://other.example/v1"},  # another server
    ],
)
def test_a_saved_batch_this_server_does_not_know_is_dropped_and_the_requests_resubmitted(
    fake_openai, openai_settings, tmp_path, saved, caplog
):
    openai_settings["mode"] = "batch"
    (tmp_path / "b.batch.json").write_text(json.dumps(saved))
    with caplog.at_level("WARNING"):
        results, _ = run(openai_settings, tmp_path / "b.jsonl", requests(3))
    assert all(isinstance(r, dict) for r in results)
    assert len(fake_openai.batches) == 1 and not (tmp_path / "b.batch.json").exists()
    assert saved["batch_id"] in caplog.text and "submitting the open requests again" in caplog.text


@pytest.mark.parametrize(
    "source, translated, reason",
    [
        ("Run `ls -la` in the folder now.", "Chạy `ls -l` trong thư mục ngay bây giờ.", "code not kept"),
        ("Fix:\n```py\nprint(1)\n```", "Sửa:\n```py\nprint(2)\n```", "code block not kept"),
        ("See https://example.org/a for the details.", "Xem trang để biết chi tiết nhé.", "URL not kept"),
        ("Dear {name}, welcome.", "Chào bạn, chào mừng.", "placeholder not kept"),
        ("Name 3 fruits that grow in 2 countries.", "Kể tên ba loại trái cây.", "number 3 not kept"),
        (
            "Give three tips for staying healthy every day.",
            "Give three tips for staying healthy every day.",
            "left untranslated",
        ),
        (
            "Give three tips for staying healthy every day.",
            "Donnez trois conseils pour rester en bonne santé.",
            "wrong language (fr)",
        ),
        (
            "Give 1,000 tips at https://example.org/a, {name}.",
            "Đưa ra 1.000 lời khuyên tại https://example.org/a, {name}.",
            None,
        ),
        ("Say hi.", "Say hi.", None),  # too short to tell
    ],
)
def test_translation_problems(source, translated, reason):
    assert translation_problem(source, translated, "vi") == reason


def shard(tmp_path, n: int):
    records = [
        {
            "id": f"a-{i}",
            "instruction": f"Give {i} tips for staying healthy every day.",
            "input": "",
            "output": f"Eat well and sleep {i + 6} hours at https://example.org/sleep.",
        }
        for i in range(n)
    ]
    write_jsonl(tmp_path / "en.jsonl", records)
    return [
        tmp_path / "en.jsonl",
        tmp_path / "t.jsonl",
        tmp_path / "r.jsonl",
        tmp_path / "rep.json",
        "vi",
        PROMPTS / "translate.txt",
    ]


def test_unusable_translations_are_asked_again_and_too_many_rejects_fail_the_job(
    fake_openai, openai_settings, tmp_path
):
    openai_settings.update(max_retries=1, max_concurrency=1, max_reject_share=0.2)
    # Item 0: left in English, then fine. Items 1-2: numbers dropped twice: rejected.
    fake_openai.faults = [
        ("english",),
        ("no_numbers",),
        ("no_numbers",),
        (None,),
        (None,),
        ("no_numbers",),
        ("no_numbers",),
    ]
    with pytest.raises(TooManyRejects) as failure:
        translate_shard(*shard(tmp_path, 4), openai_settings, "tr/vi/0000")
    message = str(failure.value)
    assert "\n" not in message and "2 of 4 items rejected (50.0%" in message and "max_reject_share" in message
    report = json.loads((tmp_path / "rep.json").read_text())
    assert report["total"] == report["accepted"] + report["rejected"] == 4
    assert report["reasons"] == {"'instruction': number 1 not kept": 1, "'instruction': number 2 not kept": 1}
    # Nothing answered is lost: with a higher limit the rerun sends nothing.
    sent = fake_openai.count
    openai_settings["max_reject_share"] = 0.5
    assert translate_shard(*shard(tmp_path, 4), openai_settings, "tr/vi/0000") == report
    assert fake_openai.count == sent


def llm(backend="openai", **prices):
    # A model tiktoken has no encoding for: 4 characters a token, with or without network.
    return {
        **llm_defaults(),
        "backend": backend,
        "model": "local-server-model",
        "price_input_per_1k": 0.0005,
        "price_output_per_1k": 0.0015,
        **prices,
    }


def test_cost_estimate_and_the_budget_gate(fake_openai, openai_settings, tmp_path):
    write_jsonl(
        tmp_path / "instructions.jsonl", [{"id": "a", "instruction": "x" * 400, "input": "", "output": "y" * 400}]
    )
    write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "Name a colour.", "input": "", "output": "Blue."}])
    prompts = {
        "translation": PROMPTS / "translate.txt",
        "self_instruct": PROMPTS / "self_instruct.txt",
        "rank": PROMPTS / "rank.txt",
        "back_translation": PROMPTS / "back_translate.txt",
    }
    stages = {"self_instruct": llm(), "translation": llm(), "ranking": llm("hf")}
    rows = estimate_costs(
        stages,
        tmp_path / "estimate.csv",
        instructions=tmp_path / "instructions.jsonl",
        seed_tasks=tmp_path / "seeds.jsonl",
        prompts=prompts,
        languages=["vi", "bn"],
        responders=["m"],
        sizes={"sft": 600, "rm": 300, "ppo": 100},
        self_instruct={"count": 10, "max_attempts": 40, "tasks_per_request": 8},
        ranking={"responses_per_prompt": 4, "max_new_tokens": 256},
    )
    with open(tmp_path / "estimate.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["stage"], r["language"]) for r in table] == [
        ("self_instruct", "en"),
        ("translation", "vi"),
        ("translation", "bn"),
        ("ranking", "vi"),
        ("ranking", "bn"),
    ]
    # 40 tasks asked for, 8 a request: 5 requests, each answered with 8 tasks.
    task = 17  # tokens of the seed task as JSON: 66 characters, 4 a token
    assert (rows[0]["requests"], rows[0]["output_tokens"]) == (5, 5 * 8 * task)
    vi, bn = rows[1], rows[2]
    assert vi["requests"] == 1000 and vi["output_tokens"] == 1000 * 209  # the JSON record: 835 chars, 4 a token
    assert bn["output_tokens"] > vi["output_tokens"]  # Bengali script takes more tokens
    assert vi["usd"] == pytest.approx(vi["input_tokens"] / 1000 * 0.0005 + vi["output_tokens"] / 1000 * 0.0015)
    assert rows[3]["usd"] == 0.0 and rows[3]["input_tokens"] > 0  # hf is free


def test_a_paid_stage_over_budget_refuses_with_a_line_that_says_how_to_raise_it(tmp_path):
    from okapi_pipeline.config import llm_settings, load_schema, validate_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["llm"] = {"backend": "openai", "model": "gpt", "price_input_per_1k": 0.5, "price_output_per_1k": 1.5}
    config["ranking"]["llm"] = {"backend": "hf", "model": "tiny-llama"}
    config = validate_config(config, load_schema(REPO / "schemas/config.schema.yaml"))
    rows = config_estimate(config, REPO / "demo/instructions.jsonl")
    estimate = tmp_path / "tokens.csv"
    write_rows(estimate, rows, TOKEN_COLUMNS)
    cost = sum(r["usd"] for r in rows if r["stage"] == "translation")
    settings = llm_settings(config, "translation")
    with pytest.raises(BudgetExceeded) as failure:
        check_stage_budget(estimate, "translation", dict(settings, budget_usd=cost / 2))
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"translation: the estimated cost ${cost:,.2f}")
    assert "set llm.budget_usd (or translation.llm.budget_usd) to at least" in message
    check_stage_budget(estimate, "translation", dict(settings, budget_usd=cost + 0.01))
    check_stage_budget(estimate, "translation", dict(settings, budget_usd=None))
    check_stage_budget(estimate, "ranking", dict(llm_settings(config, "ranking"), budget_usd=0))  # hf: free
    with pytest.raises(BudgetExceeded, match="self_instruct"):
        check_stage_budget(estimate, "self_instruct", llm_settings(config, "self_instruct"))


def test_translation_qa_language_share_and_broken_code(tmp_path):
    en = [
        {
            "id": f"a-{i}",
            "instruction": "Explain what the following command does in a shell.",
            "input": "`rm -rf build`",
            "output": "It removes the build folder and everything inside it.",
        }
        for i in range(4)
    ]
    vi = [
        dict(
            r,
            instruction=fake_translation(r["instruction"], "Vietnamese"),
            output=fake_translation(r["output"], "Vietnamese"),
        )
        for r in en
    ]
    vi[1]["input"] = "`rm -rf`"  # broken code
    vi[2]["output"] = "Cela supprime le dossier de construction et tout ce qu'il contient."  # French
    write_jsonl(tmp_path / "en" / "sft.jsonl", en)
    write_jsonl(tmp_path / "vi" / "sft.jsonl", vi)
    qa = translation_qa(
        {"sft": tmp_path / "en" / "sft.jsonl"}, {"sft": tmp_path / "vi" / "sft.jsonl"}, {}, tmp_path / "qa.json", "vi"
    )
    sft = qa["splits"]["sft"]
    assert sft["broken_code"] == 1 and sft["broken_code_ids"] == ["a-1"]
    assert sft["language_judged"] == 4 and sft["in_target_language_share"] == 0.75
    assert qa["totals"]["in_target_language_share"] == 0.75


def test_settings_that_leave_a_request_identical_cost_nothing_on_rerun(fake_openai, openai_settings, tmp_path):
    first, sent = run(openai_settings, tmp_path / "c.jsonl", requests(4))
    assert sent == 4
    openai_settings.update(
        max_concurrency=1,
        requests_per_minute=6000,
        tokens_per_minute=10**6,
        timeout_s=5,
        price_input_per_1k=1.0,
        budget_usd=None,
        max_reject_share=0.0,
    )
    again, sent = run(openai_settings, tmp_path / "c.jsonl", requests(4))
    assert sent == 0 and again == first
    openai_settings["max_new_tokens"] = 100  # a different request
    _, sent = run(openai_settings, tmp_path / "c.jsonl", requests(4))
    assert sent == 4


def test_llm_defaults_fill_the_top_block_and_batch_needs_the_openai_backend():
    from okapi_pipeline.config import ConfigError, llm_settings, load_schema, validate_config

    schema = load_schema(REPO / "schemas/config.schema.yaml")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["llm"] = {"backend": "hf", "model": "tiny-llama"}
    config["translation"]["llm"] = {"max_reject_share": 0.5}
    settings = llm_settings(validate_config(config, schema), "translation")
    assert settings["mode"] == "online" and settings["budget_usd"] == 0 and settings["max_reject_share"] == 0.5
    config["ranking"]["llm"] = {"mode": "batch"}
    with pytest.raises(ConfigError, match=r"^config: 'ranking.llm.mode': batch needs the openai backend$"):
        validate_config(config, schema)
