"""A stage that will call the API needs its key: the message names the variable and only
the stages that will run."""

import yaml

from okapi_pipeline.config import load_schema, missing_api_keys, validate_config
from tests.support.configs import ABSENT_KEY_OVERRIDE
from tests.support.workflow import REPO


def config_with(overrides: dict) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in overrides.items():
        config[key] = {**config[key], **value}
    return validate_config(config, load_schema(REPO / "schemas" / "config.schema.yaml"))


def test_missing_keys_name_the_variable_and_only_the_stages_that_will_run(monkeypatch):
    config = config_with(ABSENT_KEY_OVERRIDE)
    monkeypatch.delenv("OKAPI_ABSENT_KEY", raising=False)
    message = missing_api_keys(config, {"translate_shard", "rank_shard", "train_sft"})
    assert message == (
        "the environment variable OKAPI_ABSENT_KEY is not set: the translation stage will call "
        "the API with it (nothing was run)"
    )
    assert missing_api_keys(config, {"rank_shard", "train_sft"}) is None  # ranking runs locally
    monkeypatch.setenv("OKAPI_ABSENT_KEY", "sk-test")
    assert missing_api_keys(config, {"translate_shard"}) is None
