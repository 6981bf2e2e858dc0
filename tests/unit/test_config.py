"""The schema is the one place for defaults and for which LLM settings shape answers; a bad
config is one line naming the key, as rules/common.smk checks it before anything is planned."""

import pytest
import yaml

from okapi_pipeline.config import (
    ConfigError,
    answer_settings,
    check_files,
    llm_defaults,
    llm_settings,
    load_schema,
    validate_config,
)
from tests.support.workflow import REPO, merged, merged_config


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


def test_the_dpo_config_adds_dpo_beside_ppo_to_the_demo():
    """The demo trains PPO only; the workflow layer runs it with .test/config_dpo.yaml."""
    assert "dpo" not in merged_config()["rlhf"]["methods"]
    assert merged_config(".test/config_dpo.yaml")["rlhf"]["methods"] == ["ppo", "dpo"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("sft:\n  learning_rate: fast\n", "config: 'sft.learning_rate': 'fast' is not of type 'number'"),
        ("languages: [vi, xx]\n", "config: 'languages.1': unknown language code 'xx'"),
        ("ppo:\n  kl_coeff: 0.1\n", "config: unknown key 'ppo.kl_coeff'"),
        ("models: [gpt-2]\n", "config: 'models.0': 'gpt-2' is not an entry of base_models"),
        (
            "self_instruct:\n  seed_tasks: https://example.org/seeds.jsonl\n",
            "config: missing key 'self_instruct.seed_tasks_sha256' (seed_tasks is a URL)",
        ),
        (
            "split:\n  rm: {sources: [alpaca, self_instruct], size: 4}\n",
            "config: split: ['sft'] take ['alpaca'] and ['rm'] take ['alpaca', 'self_instruct']",
        ),
        ("ranking:\n  responses_from: gpt-4\n", "config: 'ranking.responses_from': 'gpt-4' is neither own nor"),
        ("benchmarks:\n  arc:\n    path: demo/benchmark\n", "config: 'benchmarks.arc.path': no folder demo/benchmark"),
        (
            "languages: [vi, xh]\nsplit:\n  rm: {source: okapi_release}\n",
            "config: 'split.rm.source': the Okapi release has no multilingual-ranking-data-42k file for xh",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(override, message, monkeypatch):
    """The checks rules/common.smk runs on `--configfile override.yaml`: the schema and the
    cross-key rules, then the file checks from the workflow's folder."""
    monkeypatch.chdir(REPO)
    config = merged(merged_config(), yaml.safe_load(override))
    with pytest.raises(ConfigError) as error:
        check_files(validate_config(config, load_schema()))
    assert "\n" not in str(error.value) and str(error.value).startswith(message)
