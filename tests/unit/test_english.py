"""English as a language: the control row, trained on the English splits, never translated."""

import pytest
import yaml

from okapi_pipeline.config import ConfigError, llm_defaults, load_schema, validate_config
from okapi_pipeline.data.ranking import rank_shard
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.report.cost import estimate_costs
from okapi_pipeline.report.figures import gains_by_group
from okapi_pipeline.report.tables import table_rows
from tests.support.workflow import REPO

PROMPTS = REPO / "prompts"


def demo_config(**overrides) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(overrides)
    return config


def test_english_is_a_language_and_a_released_split_for_it_is_a_config_error():
    assert validate_config(demo_config(languages=["en", "vi"]), load_schema())["languages"] == ["en", "vi"]
    split = demo_config()["split"]
    split["sft"] = {**split["sft"], "source": "okapi_release"}
    with pytest.raises(ConfigError, match=r"^config: 'split.sft.source': the Okapi release has no English data"):
        validate_config(demo_config(languages=["en", "vi"], split=split), load_schema())


def test_english_responses_are_ranked_as_they_are(fake_openai, openai_settings, tmp_path):
    responses = ["One.", "One two three four.", "One two.", "One two three."]
    write_jsonl(
        tmp_path / "responses.jsonl", [{"id": "a", "instruction": "Count", "input": "", "responses": responses}]
    )
    out = [tmp_path / name for name in ("ranked.jsonl", "rejects.jsonl", "report.json")]
    report = rank_shard(
        tmp_path / "responses.jsonl",
        *out,
        "en",
        f"{PROMPTS}/rank.txt",
        f"{PROMPTS}/back_translate.txt",
        openai_settings,
        "ranking/m/en/0000",
    )
    assert report["ranked"] == 1 and fake_openai.count == 1  # the ranking request only
    [ranked] = read_jsonl(out[0])
    assert ranked["english"]["responses"] == responses and ranked["ranking"] == [1, 3, 2, 0]


def test_english_costs_no_translation_and_one_ranking_request_per_item(tmp_path):
    write_jsonl(tmp_path / "instructions.jsonl", [{"id": "a", "instruction": "x" * 400, "input": "", "output": "y"}])
    prompts = {
        "translation": PROMPTS / "translate.txt",
        "self_instruct": PROMPTS / "self_instruct.txt",
        "rank": PROMPTS / "rank.txt",
        "back_translation": PROMPTS / "back_translate.txt",
    }
    llm = {
        **llm_defaults(),
        "backend": "openai",
        "model": "local-server-model",
        "price_input_per_1k": 0.5,
        "price_output_per_1k": 1.5,
    }
    rows = estimate_costs(
        {"self_instruct": llm, "translation": llm, "ranking": llm},
        instructions=tmp_path / "instructions.jsonl",
        seed_tasks=None,
        prompts=prompts,
        languages=["en", "vi"],
        responders=["m"],
        sizes={"sft": 60, "rm": 30, "ppo": 10},
        self_instruct=None,
        ranking={"responses_per_prompt": 4, "max_new_tokens": 256},
    )
    by_key = {(row["stage"], row["language"]): row for row in rows if row["stage"] != "self_instruct"}
    assert set(by_key) == {("translation", "vi"), ("ranking", "vi"), ("ranking", "en")}
    assert by_key[("ranking", "en")]["requests"] == 30 and by_key[("ranking", "vi")]["requests"] == 60


def test_english_is_the_control_group_outside_the_overall_average():
    rows = table_rows(["en", "vi", "bn"])
    assert [(group, label, members) for group, label, members, _ in rows] == [
        ("high", "vi", ["vi"]),
        ("high", "average", ["vi"]),
        ("low", "bn", ["bn"]),
        ("low", "average", ["bn"]),
        ("control", "en", ["en"]),
        ("control", "average", ["en"]),
        ("all", "average", ["vi", "bn"]),
    ]
    scores = {("m", variant, lang): value for lang, value in (("en", 60.0), ("vi", 40.0)) for variant in ("sft", "ppo")}
    scores[("m", "ppo", "en")] = 70.0
    gains = gains_by_group(scores, ["m"], ["en", "vi"], [("ppo", "sft")])
    assert gains[("m", "ppo", "control")] == 10.0 and gains[("m", "ppo", "all")] == 0.0
