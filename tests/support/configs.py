"""Configs the tests build from the demo's config.yaml: validated, with LLM or MT settings."""

import yaml

from okapi_pipeline.config import llm_defaults, load_schema, validate_config
from tests.support.fake_openai import KEY_VARIABLE
from tests.support.workflow import REPO


def demo_config(**llm) -> dict:
    """config.yaml with `llm` over its top-level LLM block, validated."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["llm"].update(llm)
    return validate_config(config, load_schema())


def openai_config(base_url, cache_dir, **llm) -> dict:
    """The demo's config calling the fake OpenAI server at `base_url`."""
    return demo_config(
        backend="openai",
        model="fake-model",
        base_url=base_url,
        api_key_env=KEY_VARIABLE,
        cache_dir=str(cache_dir),
        **llm,
    )


# The API stages on an API key that is not set; ranking runs locally.
ABSENT_KEY_OVERRIDE = {
    "llm": {"backend": "openai", "model": "gpt-x", "api_key_env": "OKAPI_ABSENT_KEY", "budget_usd": None},
    "ranking": {"llm": {"backend": "hf", "model": "tiny-llama"}},
}


def mt_settings(model_dir, tmp_path, **changes):
    """LLM settings of the `mt` backend on the MT model in `model_dir`, greedy and short."""
    return {
        **llm_defaults(),
        "backend": "mt",
        "model": str(model_dir),
        "temperature": 0.0,
        "max_new_tokens": 6,
        "max_concurrency": 4,
        "max_retries": 0,
        "num_beams": 1,
        "max_segment_tokens": 256,
        "cache_dir": str(tmp_path / "cache"),
        "api_key_env": "UNUSED",
        "max_reject_share": 1.0,
        "answer_checks": "basic",
        **changes,
    }
