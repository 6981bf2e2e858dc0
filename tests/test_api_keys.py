"""A stage that will call the API needs its key before a real run's first job."""

import yaml

from okapi_pipeline.config import load_schema, missing_api_keys, validate_config
from tests.workflow import REPO, copy_workflow, snakemake

OVERRIDE = {
    "llm": {"backend": "openai", "model": "gpt-x", "api_key_env": "OKAPI_ABSENT_KEY", "budget_usd": None},
    "ranking": {"llm": {"backend": "hf", "model": "tiny-llama"}},
}


def config_with(overrides: dict) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in overrides.items():
        config[key] = {**config[key], **value}
    return validate_config(config, load_schema(REPO / "schemas" / "config.schema.yaml"))


def test_missing_keys_name_the_variable_and_only_the_stages_that_will_run(monkeypatch):
    config = config_with(OVERRIDE)
    monkeypatch.delenv("OKAPI_ABSENT_KEY", raising=False)
    message = missing_api_keys(config, {"translate_shard", "rank_shard", "train_sft"})
    assert message == (
        "the environment variable OKAPI_ABSENT_KEY is not set: the translation stage will call "
        "the API with it (nothing was run)"
    )
    assert missing_api_keys(config, {"rank_shard", "train_sft"}) is None  # ranking runs locally
    monkeypatch.setenv("OKAPI_ABSENT_KEY", "sk-test")
    assert missing_api_keys(config, {"translate_shard"}) is None


def test_a_real_run_stops_before_its_first_job_and_a_dry_run_still_plans(tmp_path, monkeypatch):
    monkeypatch.delenv("OKAPI_ABSENT_KEY", raising=False)
    workdir = copy_workflow(tmp_path)
    (workdir / "override.yaml").write_text(yaml.safe_dump(OVERRIDE))
    planned = snakemake(workdir, "-n", "--cores", "1", "--configfile", "override.yaml")
    assert "translate_shard" in planned.stdout
    result = snakemake(workdir, "--cores", "1", "--configfile", "override.yaml", check=False)
    assert result.returncode != 0
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert last.startswith("the environment variable OKAPI_ABSENT_KEY is not set: the self_instruct, translation")
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()
