"""The config a check runs with, and a training stage's settings cut to a few steps."""

from pathlib import Path

import yaml

# The checkout: its config files, the demo corpus, benchmarks and instructions.
REPO = Path(__file__).resolve().parents[2]


def merge(base: dict, override: dict) -> dict:
    """`override` merged into `base` key by key, as snakemake merges --configfile over config.yaml."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def load_config(size: str) -> tuple[dict, str | None]:
    """config.yaml (--tiny) or configs/paper.yaml over it, with the schema's defaults; and a warning.

    When the config does not validate (a key the schema does not know yet, while one of
    them is being changed) the check still runs on the merged config, with a warning.
    """
    from okapi_pipeline.config import ConfigError, _set_defaults, load_schema, validate_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if size != "tiny":
        config = merge(config, yaml.safe_load((REPO / "configs/paper.yaml").read_text()))
    schema = load_schema()
    try:
        return validate_config(config, schema), None
    except ConfigError as error:
        _set_defaults(config, schema)
        return config, f"{error}; measured with the config as written"


def training_settings(
    config: dict, stage: str, steps: int, ppo_rounds: int, ppo_processes: int = 1
) -> tuple[dict, int]:
    """A training stage's configured settings cut to a few steps, and the examples that takes.

    One epoch over exactly `steps` effective batches, nothing held out (evaluation is
    not what is timed). PPO: `ppo_rounds` rounds of one process's share of the configured
    rollouts and minibatch (see shapes.PPO_PROCESSES); the schedule is read from the keys
    the block has (`rounds`, or the older `total_episodes`).
    """
    # As the training scripts hand it: the stage's block and where the logs are reported.
    settings = dict(config[stage], report_to=config["training"]["report_to"])
    if stage != "ppo":
        settings.update(epochs=1, held_out_fraction=0.0)
        return settings, steps * settings["effective_batch_size"]
    if settings["rollout_batch_size"] % ppo_processes == 0 and settings["mini_batch_size"] % ppo_processes == 0:
        settings["rollout_batch_size"] //= ppo_processes
        settings["mini_batch_size"] //= ppo_processes
    rollouts = settings["rollout_batch_size"]
    if "total_episodes" in settings:
        settings["total_episodes"] = ppo_rounds * rollouts
    else:
        settings["rounds"] = ppo_rounds
    return settings, ppo_rounds * rollouts
