"""Token counts with tiktoken's encoding of each stage's API model, and the 4-characters rule
where there is none. The encodings are built here (no download): small BPE vocabularies
standing in for o200k_base and cl100k_base behind tiktoken's model lookup."""

import json
import logging
import sys
import time

import pytest
import requests
import tiktoken
import tiktoken.model

from okapi_pipeline.config import llm_defaults
from okapi_pipeline.llm import JsonRequest
from okapi_pipeline.llm.budget import (
    MESSAGE_TOKENS,
    TOKEN_FACTOR,
    characters_tokens,
    token_counter,
    tokens,
    translation_requests_usd,
    usd,
)
from okapi_pipeline.llm.openai_api import estimate_tokens
from okapi_pipeline.report.cost import count_tokens
from tests.support.workflow import REPO

PROMPTS = {
    "translation": REPO / "prompts/translate.txt",
    "self_instruct": REPO / "prompts/self_instruct.txt",
    "rank": REPO / "prompts/rank.txt",
    "back_translation": REPO / "prompts/back_translate.txt",
    "benchmarks": REPO / "prompts/translate_benchmark.txt",
}
PAID = {**llm_defaults(), "backend": "openai", "price_input_per_1k": 1.0, "price_output_per_1k": 2.0}
# Whole words, and runs of spaces, are pieces; every byte is a token, and a few merges make
# "the" and " the" one token each (more in the o200k stand-in: " cat" and " sat" too).
WORDS = r"""\s?[^\s]+|\s+(?!\S)|\s+"""


def bpe(name: str, merges: list[bytes]) -> tiktoken.Encoding:
    ranks = {bytes([b]): b for b in range(256)}
    for merge in merges:
        ranks[merge] = len(ranks)
    return tiktoken.Encoding(name, pat_str=WORDS, mergeable_ranks=ranks, special_tokens={})


ENCODINGS = {
    "cl100k_base": bpe("cl100k_base", [b"th", b"the", b" t", b" th", b" the"]),
    "o200k_base": bpe(
        "o200k_base", [b"th", b"the", b" t", b" th", b" the", b" c", b" ca", b" cat", b" s", b" sa", b" sat"]
    ),
}
TEXT = "the cat sat on the mat the cat sat"


@pytest.fixture(autouse=True)
def fresh_counters():
    """Each test looks its models up anew (a job does once per model)."""
    token_counter.cache_clear()
    yield
    token_counter.cache_clear()


@pytest.fixture
def encodings(monkeypatch):
    """tiktoken's model lookup, as the library maps model names, returning the encodings above."""
    looked_up = []

    def encoding_for_model(model):
        looked_up.append(model)
        return ENCODINGS[tiktoken.model.encoding_name_for_model(model)]

    monkeypatch.setattr(tiktoken, "encoding_for_model", encoding_for_model)
    return looked_up


def test_the_counts_come_from_the_encoding_of_the_model(encodings, caplog):
    caplog.set_level(logging.INFO, logger="okapi_pipeline.llm.budget")
    o200k, cl100k = (len(ENCODINGS[name].encode_ordinary(TEXT)) for name in ("o200k_base", "cl100k_base"))
    # "the" and " the" are one token each in both; " cat" and " sat" only in o200k.
    assert (o200k, cl100k) == (14, 26)
    assert characters_tokens(TEXT) == 9
    assert tokens(TEXT, "gpt-4o-mini") == tokens(TEXT, "gpt-4o") == 14
    assert tokens(TEXT, "gpt-3.5-turbo") == tokens(TEXT, "gpt-4") == 26
    assert tokens(TEXT) == 9  # no model (a local backend): 4 characters a token
    # Text that reads as a special token is counted as text, not refused.
    assert tokens("<|endoftext|>", "gpt-4o") == len("<|endoftext|>")
    # One lookup per model, however many texts are counted.
    assert sorted(encodings) == ["gpt-3.5-turbo", "gpt-4", "gpt-4o", "gpt-4o-mini"]
    assert "gpt-4o: tokens counted with tiktoken's o200k_base encoding" in caplog.messages

    # The translator comparison's own estimate counts with the job's model.
    request = JsonRequest("the cat", {"text": TEXT}, ("text",))
    gpt4o = {**PAID, "model": "gpt-4o"}
    sent = len(ENCODINGS["o200k_base"].encode_ordinary(request.user_text()))
    prompt = len(ENCODINGS["o200k_base"].encode_ordinary("the cat"))
    assert translation_requests_usd([request], "vi", gpt4o) == usd(prompt + sent + MESSAGE_TOKENS, sent, gpt4o)
    assert translation_requests_usd([request], "bn", gpt4o) == usd(
        prompt + sent + MESSAGE_TOKENS, TOKEN_FACTOR["bn"] * sent, gpt4o
    )
    # A local backend's model is no OpenAI model: 4 characters a token, never a lookup.
    encodings.clear()
    assert translation_requests_usd([request], "vi", {**PAID, "backend": "hf", "model": "gpt-4"}) == 0.0
    assert encodings == []

    # The pacing of the openai backend (tokens per minute) counts the prompt the same way.
    messages = [{"role": "system", "content": "the cat"}, {"role": "user", "content": TEXT}]
    assert estimate_tokens(messages, "gpt-4o") == prompt + 14 + 2 * 4


def test_the_token_counts_file_counts_each_stage_with_its_own_model(encodings, tmp_path):
    records = [
        {"id": "a", "instruction": "Name the cat.", "input": "", "output": TEXT},
        {"id": "b", "instruction": "the cat sat", "input": "on the mat", "output": "the mat"},
    ]
    (tmp_path / "en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    arguments = dict(
        instructions=tmp_path / "en.jsonl",
        seed_tasks=None,
        prompts=PROMPTS,
        languages=["en", "vi"],
        responders=["m"],
        sizes={"sft": 10, "rm": 4, "ppo": 0},
        self_instruct=None,
        ranking={"responses_per_prompt": 2, "max_new_tokens": 8},
        stages=("self_instruct", "translation", "ranking", "back_translation"),
    )
    rows = count_tokens(**arguments, models={"translation": "gpt-4o", "back_translation": "gpt-3.5-turbo"})
    by_stage = {(row["stage"], row["language"]): row for row in rows}

    def mean_tokens(count, texts):
        return sum(count(text) for text in texts) / len(texts)

    o200k = ENCODINGS["o200k_base"].encode_ordinary
    cl100k = ENCODINGS["cl100k_base"].encode_ordinary
    sent = [json.dumps({k: r[k] for k in ("instruction", "input", "output") if r[k]}) for r in records]
    record = mean_tokens(lambda text: len(o200k(text)), sent)
    prompt = len(o200k(PROMPTS["translation"].read_text()))
    # Translation (gpt-4o): 14 items of the prompt, a record and the chat overhead, the record out.
    assert by_stage["translation", "vi"]["input_tokens"] == round(14 * (prompt + record + MESSAGE_TOKENS))
    assert by_stage["translation", "vi"]["output_tokens"] == round(14 * record)
    # Back-translation (gpt-3.5-turbo): the English prompt and 2 responses of 8 tokens back, per item.
    english = mean_tokens(lambda text: len(cl100k(text)), [r["instruction"] + r["input"] for r in records]) + 2 * 8
    assert by_stage["back_translation", "vi"]["output_tokens"] == round(4 * english)
    # Ranking has no model named (a local judge): the same texts at 4 characters a token.
    english_chars = mean_tokens(characters_tokens, [r["instruction"] + r["input"] for r in records]) + 2 * 8
    rank_prompt = characters_tokens(PROMPTS["rank"].read_text())
    assert by_stage["ranking", "en"]["input_tokens"] == round(4 * (rank_prompt + english_chars + MESSAGE_TOKENS))
    assert sorted(encodings) == ["gpt-3.5-turbo", "gpt-4o"]
    # The model is what changes the counts: another encoding, other numbers.
    token_counter.cache_clear()
    other = count_tokens(**arguments, models={"translation": "gpt-3.5-turbo", "back_translation": "gpt-3.5-turbo"})
    other_translation = next(row for row in other if row["stage"] == "translation")
    assert other_translation["output_tokens"] > by_stage["translation", "vi"]["output_tokens"]


def test_without_an_encoding_the_counts_are_4_characters_a_token_said_once(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="okapi_pipeline.llm.budget")
    text = "x" * 41
    # A model tiktoken does not map (an OpenAI-compatible server's own model): no download tried.
    assert tokens(text, "meta-llama/Llama-3.1-8B-Instruct") == tokens(text, "meta-llama/Llama-3.1-8B-Instruct") == 11

    # Offline: tiktoken fails to download the encoding file, as it does on a node without network.
    def download_fails(model):
        raise requests.exceptions.ConnectionError("Failed to resolve 'openaipublic.blob.core.windows.net'")

    monkeypatch.setattr(tiktoken, "encoding_for_model", download_fails)
    assert tokens(text, "gpt-4o") == 11
    # tiktoken not installed.
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    assert tokens(text, "gpt-4") == 11
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        "meta-llama/Llama-3.1-8B-Instruct: tokens counted at 4 characters a token: "
        "tiktoken has no encoding for this model",
        "gpt-4o: tokens counted at 4 characters a token: tiktoken cannot load its encoding (ConnectionError); "
        "load it once where there is network, into TIKTOKEN_CACHE_DIR",
        "gpt-4: tokens counted at 4 characters a token: tiktoken is not installed",
    ]


def test_a_stalled_encoding_download_falls_back_after_its_timeout(monkeypatch, caplog):
    from okapi_pipeline.llm import budget

    # tiktoken's download without a timeout, behind a firewall that drops packets.
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda model: time.sleep(30))
    monkeypatch.setattr(budget, "ENCODING_DOWNLOAD_TIMEOUT_S", 0.2)
    started = time.monotonic()
    assert tokens("x" * 41, "gpt-4-0613") == 11
    assert time.monotonic() - started < 5
    assert "tiktoken cannot load its encoding (TimeoutError)" in caplog.text
