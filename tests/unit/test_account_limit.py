"""API jobs of one account share its limits: the share divides both limits and changes no
rule param, and a stage may not set its own `api_jobs_at_once`."""

import pytest
import yaml

from okapi_pipeline.config import (
    ConfigError,
    account_share,
    answer_settings,
    llm_settings,
    load_schema,
    validate_config,
)
from tests.support.configs import openai_config
from tests.support.workflow import REPO


def test_the_share_divides_both_limits_and_changes_no_rule_param(tmp_path):
    config = openai_config(
        "http://127.0.0.1:9/v1", tmp_path, requests_per_minute=3500, tokens_per_minute=90000, api_jobs_at_once=5
    )
    settings = account_share(config, llm_settings(config, "translation"))
    assert (settings["requests_per_minute"], settings["tokens_per_minute"]) == (700, 18000)
    # Neither where API jobs run nor how many at once shapes an answer: no finished job reruns.
    other = openai_config(
        "http://127.0.0.1:9/v1", tmp_path, requests_per_minute=3500, api_jobs="cluster", api_jobs_at_once=2
    )
    assert answer_settings(llm_settings(other, "translation")) == answer_settings(llm_settings(config, "translation"))
    # No limit stays no limit.
    unlimited = openai_config("http://127.0.0.1:9/v1", tmp_path)
    assert account_share(unlimited, llm_settings(unlimited, "ranking"))["requests_per_minute"] is None


def test_a_stage_may_not_set_its_own_api_jobs():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["translation"]["llm"] = {"api_jobs_at_once": 2}
    with pytest.raises(ConfigError, match=r"^config: 'translation.llm.api_jobs_at_once': set it in the top-level"):
        validate_config(config, load_schema())
