"""The schema is the one place for defaults and for which LLM settings shape answers."""

import yaml

from okapi_pipeline.config import answer_settings, llm_defaults, llm_settings, load_schema, validate_config
from tests.workflow import REPO


def validated(**overrides) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(overrides)
    return validate_config(config, load_schema())


def test_defaults_fill_mapping_entries_and_each_benchmark_protocol():
    evaluation = yaml.safe_load((REPO / "config.yaml").read_text())["evaluation"]
    evaluation["released_models"] = {"mine": {"hub_id": "org/mine"}}
    evaluation["hellaswag"] = {"split": "validation", "metric": "acc_norm"}
    base_models = {**yaml.safe_load((REPO / "config.yaml").read_text())["base_models"], "tiny": {"hub_id": "org/tiny"}}
    config = validated(evaluation=evaluation, base_models=base_models)
    assert config["evaluation"]["released_models"]["mine"] == {
        "hub_id": "org/mine",
        "revision": "main",
        "parameters": None,
        "languages": None,
    }
    assert config["base_models"]["tiny"] == {"hub_id": "org/tiny", "revision": "main", "parameters": None}
    assert config["evaluation"]["hellaswag"]["num_fewshot"] == 0
    assert config["evaluation"]["hellaswag"]["fewshot_split"] is None


def test_a_stage_block_overrides_only_what_it_sets():
    config = validated(
        translation={**yaml.safe_load((REPO / "config.yaml").read_text())["translation"], "llm": {"temperature": 0.5}}
    )
    assert config["translation"]["llm"] == {"temperature": 0.5}  # no defaults filled in
    settings = llm_settings(config, "translation")
    assert settings["temperature"] == 0.5
    assert settings["max_new_tokens"] == config["llm"]["max_new_tokens"]


def test_the_schema_marks_which_settings_shape_answers():
    settings = {**llm_defaults(), "backend": "openai", "model": "m"}
    kept = answer_settings(settings)
    # Operational settings (limits, cache, prices, budget) would rerun jobs for nothing.
    for key in ("max_concurrency", "requests_per_minute", "cache_dir", "budget_usd", "max_reject_share", "mode"):
        assert key not in kept
    for key in ("model", "temperature", "max_new_tokens", "answer_checks", "base_url"):
        assert key in kept
    # The mt backend's own settings shape its answers only.
    assert "num_beams" not in kept
    assert answer_settings({**settings, "backend": "mt"})["num_beams"] == 1
