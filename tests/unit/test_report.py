"""The evaluation config: one line naming the key, and the previous release's names read
with a deprecation line each."""

import pytest
import yaml

from okapi_pipeline.config import ConfigError, load_schema, validate_config
from tests.support.workflow import REPO


def demo_config(override: dict) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in override.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return config


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"evaluation": {"released_models": {"x": {"path": "m", "languages": ["de"]}}}},
            "config: 'evaluation.released_models.x.languages': 'de' is not in languages",
        ),
        (
            {"evaluation": {"released_models": {"tiny-llama": {"path": "m"}}}},
            "config: 'evaluation.released_models.tiny-llama': the name is already a base_models entry",
        ),
        (
            {"evaluation": {"released_models": {"x": {"path": "m", "hub_id": "a/b"}}}},
            "config: 'evaluation.released_models.x': {'path': 'm', 'hub_id': 'a/b'} is valid under each of",
        ),
        ({"models": []}, "config: 'models' is empty and there are no evaluation.released_models: nothing to evaluate"),
        ({"evaluation": {"backend": "onnx"}}, "config: 'evaluation.backend': 'onnx' is not one of ['hf', 'vllm']"),
        (
            {"benchmarks": {"arc": {"source": "translate"}}},
            "config: missing key 'benchmarks.arc.path' or hub_id (source is translate)",
        ),
    ],
)
def test_bad_evaluation_config_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        validate_config(demo_config(override), load_schema(REPO / "schemas" / "config.schema.yaml"))
    assert str(error.value).startswith(message)


def test_the_previous_release_names_are_read_with_one_deprecation_line_each(caplog):
    old = {
        "evaluation": {
            "checkpoints": {"okapi-bloom": {"path": "m", "compare_with": {"model": "bloom-7b1", "variant": "rlhf"}}}
        }
    }
    config = validate_config(demo_config(old), load_schema(REPO / "schemas" / "config.schema.yaml"))
    assert "checkpoints" not in config["evaluation"]
    assert config["evaluation"]["released_models"]["okapi-bloom"]["compare_with"] == {
        "model": "bloom-7b1",
        "variant": "ppo",
    }
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [
        "config: 'evaluation.checkpoints' is deprecated: rename it 'evaluation.released_models'",
        "config: variant 'rlhf' in 'evaluation.released_models.okapi-bloom.compare_with' is deprecated: use 'ppo'",
    ]
