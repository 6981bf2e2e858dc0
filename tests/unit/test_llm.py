"""The LLM-call layer: cache, retries, rejects, secrets, and the local hf backend."""

import json
import math
import os
import time

import openai
import pytest

from okapi_pipeline.llm import Answer, JsonRequest, LLMClient, Rejected, ResponseCache
from tests.support.fake_openai import CANARY_KEY, KEY_VARIABLE, fake_translation, files_containing

SYSTEM = "Translate every string value of the JSON object from English into German."


def requests(n: int) -> list[JsonRequest]:
    return [
        JsonRequest(SYSTEM, {"instruction": f"Say hello {i}", "output": "Hello"}, ("instruction", "output"))
        for i in range(n)
    ]


def run(settings, cache_path, reqs, check=None):
    client = LLMClient.from_settings(settings, cache_path)
    try:
        return client.json_requests(reqs, check=check), client.sent
    finally:
        client.close()


def test_answers_are_parsed_and_a_rerun_sends_nothing(fake_openai, openai_settings, tmp_path):
    cache = tmp_path / "cache" / "t.jsonl"
    first, sent = run(openai_settings, cache, requests(5))
    assert sent == 5 and fake_openai.count == 5
    assert first[3] == {
        "instruction": fake_translation("Say hello 3", "German"),
        "output": fake_translation("Hello", "German"),
    }
    second, sent = run(openai_settings, cache, requests(5))
    assert sent == 0 and fake_openai.count == 5
    assert second == first
    assert fake_openai.requests[0]["response_format"] == {"type": "json_object"}


def test_a_truncated_last_cache_line_costs_one_request(fake_openai, openai_settings, tmp_path):
    cache = tmp_path / "cache" / "t.jsonl"
    first, _ = run(openai_settings, cache, requests(4))
    text = cache.read_text()
    cache.write_text(text[: len(text) - 25])  # a kill in the middle of the last answer
    again, sent = run(openai_settings, cache, requests(4))
    assert sent == 1 and again == first
    third, sent = run(openai_settings, cache, requests(4))
    assert sent == 0 and third == first


def test_429_with_retry_after_and_500_are_retried(fake_openai, openai_settings, tmp_path):
    fake_openai.faults = [("429", 1.2), ("500",)]
    openai_settings["max_concurrency"] = 1
    start = time.monotonic()
    results, _ = run(openai_settings, tmp_path / "c.jsonl", requests(2))
    assert all(isinstance(r, dict) for r in results)
    assert fake_openai.count == 4
    assert time.monotonic() - start >= 1.2  # waited as long as the server asked


def test_concurrency_is_bounded(fake_openai, openai_settings, tmp_path):
    fake_openai.faults = [("delay", 0.2)] * 8
    openai_settings["max_concurrency"] = 3
    run(openai_settings, tmp_path / "c.jsonl", requests(8))
    assert fake_openai.max_in_flight == 3


def test_requests_per_minute_spaces_the_requests(fake_openai, openai_settings, tmp_path):
    openai_settings["requests_per_minute"] = 1200  # 20 a second, never more in one second
    openai_settings["max_concurrency"] = 50
    start = time.monotonic()
    run(openai_settings, tmp_path / "c.jsonl", requests(30))
    assert time.monotonic() - start >= 0.45


def test_unusable_answers_are_asked_again_then_rejected_with_reason(fake_openai, openai_settings, tmp_path):
    # Request 0: malformed once, then fine. Request 1: truncated on all 3 attempts.
    openai_settings["max_concurrency"] = 1
    fake_openai.faults = [("malformed",), ("truncated",), (None,), ("truncated",), ("truncated",)]
    results, sent = run(openai_settings, tmp_path / "c.jsonl", requests(2))
    assert isinstance(results[0], dict)
    assert isinstance(results[1], Rejected) and "truncated" in results[1].reason
    assert sent == 5
    # Rejections are replayed from the cache too: a rerun pays nothing.
    again, sent = run(openai_settings, tmp_path / "c.jsonl", requests(2))
    assert sent == 0 and again == results


def test_a_refused_request_is_rejected_and_a_bad_key_stops_the_job(fake_openai, openai_settings, tmp_path):
    openai_settings["max_concurrency"] = 1
    fake_openai.faults = [("400",), (None,), ("400",), ("400",)]
    results, _ = run(openai_settings, tmp_path / "c.jsonl", requests(2))
    assert isinstance(results[0], Rejected)
    assert results[0].reason.startswith("refused by the server") and "context length exceeded" in results[0].reason
    assert isinstance(results[1], dict)
    fake_openai.faults = [("401",)]
    with pytest.raises(openai.AuthenticationError):
        run(openai_settings, tmp_path / "d.jsonl", requests(1))


def test_missing_keys_and_stage_checks_are_reasons(fake_openai, openai_settings, tmp_path):
    openai_settings["max_retries"] = 0
    request = JsonRequest(SYSTEM, {"instruction": "x"}, ("instruction", "output"))
    [result], _ = run(openai_settings, tmp_path / "c.jsonl", [request])
    assert result.reason == "missing keys: output"
    [result], _ = run(openai_settings, tmp_path / "d.jsonl", requests(1), check=lambda r, a: "too short")
    assert result.reason == "too short"


def test_missing_key_variable_is_named_and_the_key_is_never_written(
    fake_openai, openai_settings, tmp_path, monkeypatch
):
    run(openai_settings, tmp_path / "cache" / "c.jsonl", requests(3))
    assert fake_openai.authorizations[0] == f"Bearer {CANARY_KEY}"
    assert files_containing(tmp_path, CANARY_KEY) == []
    monkeypatch.delenv(KEY_VARIABLE)
    with pytest.raises(RuntimeError, match=KEY_VARIABLE):
        LLMClient.from_settings(openai_settings, tmp_path / "x.jsonl")


def test_cache_appends_after_a_partial_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "content": "{}", "finish_reason": "stop"}\n{"key": "b", "cont')
    cache = ResponseCache(path)
    assert list(cache.answers) == ["a"]
    cache.put("c", Answer("{}", "stop"))
    cache.close()
    assert list(ResponseCache(path).answers) == ["a", "c"]


def test_cache_commits_in_groups_off_the_caller_and_close_flushes(tmp_path, monkeypatch):
    import okapi_pipeline.llm.cache as cache_module

    fsyncs = []
    real_fsync = os.fsync

    def slow_fsync(fd):  # a slow disk: the caller (the event loop) must not wait for it
        time.sleep(0.05)
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(cache_module.os, "fsync", slow_fsync)
    cache = ResponseCache(tmp_path / "c.jsonl")
    start = time.perf_counter()
    for i in range(200):
        cache.put(f"k{i}", Answer("{}", "stop"))
    assert time.perf_counter() - start < 0.05
    cache.close()
    assert 1 <= len(fsyncs) < 20  # group commits, not one fsync per answer
    assert list(ResponseCache(tmp_path / "c.jsonl").answers) == [f"k{i}" for i in range(200)]


def test_close_never_misses_the_writer_whatever_moment_it_comes(tmp_path):
    import random
    import threading

    def puts_and_closes():
        for i in range(150):
            cache = ResponseCache(tmp_path / f"c{i}.jsonl")
            cache.put("k", Answer("{}", "stop"))
            time.sleep(random.random() * 0.008)  # before, during or after the writer's gathering
            cache.close()

    worker = threading.Thread(target=puts_and_closes, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert all(list(ResponseCache(tmp_path / f"c{i}.jsonl").answers) == ["k"] for i in range(150))


@pytest.fixture
def hf_settings(tiny_llama_dir, tmp_path):
    return {
        "backend": "hf",
        "model": str(tiny_llama_dir),
        "temperature": 0.0,
        "max_new_tokens": 8,
        "max_concurrency": 8,
        "max_retries": 2,
        "timeout_s": 10,
        "cache_dir": str(tmp_path / "cache"),
        "api_key_env": "UNUSED",
        "base_url": None,
    }


def test_hf_backend_fills_every_key_and_caches(hf_settings, tmp_path):
    reqs = requests(3)
    client = LLMClient.from_settings(hf_settings, tmp_path / "hf.jsonl")
    results = client.json_requests(reqs)
    client.close()
    for result in results:
        assert set(result) == {"instruction", "output"}
        assert all(isinstance(value, str) and "\n" not in value for value in result.values())
    again = LLMClient.from_settings(hf_settings, tmp_path / "hf.jsonl")
    assert again.json_requests(reqs) == results and again.sent == 0
    assert again.backend.model is None  # answered from the cache without loading the model
    # The cache line is valid JSON with the generated dict inside.
    line = json.loads((tmp_path / "hf.jsonl").read_text().splitlines()[0])
    assert set(json.loads(line["content"])) == {"instruction", "output"}


def test_hf_score_prefers_likely_continuations(hf_settings, tmp_path):
    client = LLMClient.from_settings(hf_settings, tmp_path / "hf.jsonl")
    prompt = "The cat sits on the"
    scores = client.score(prompt, [" mat. The dog runs in the park.", " ্ ৃ zq xv ্ ৃ", ""])
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores[:2])
    assert scores[0] > scores[1]
    assert scores[2] == float("-inf")


def test_a_local_models_identity_is_its_weights_and_tokenizer_not_its_run_records(tmp_path):
    from okapi_pipeline.llm.backend import model_fingerprint

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "build_summary.json").write_text('{"wall_time_s": 4.56}')
    first = model_fingerprint(str(tmp_path))
    # A fresh build of the same model takes another time: the same model, the same samples.
    (tmp_path / "build_summary.json").write_text('{"wall_time_s": 4.26}')
    (tmp_path / "README.md").write_text("a card")
    assert model_fingerprint(str(tmp_path)) == first
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert model_fingerprint(str(tmp_path)) != first
