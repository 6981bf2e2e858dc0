"""Config checks and the derived values the workflow plans with.

Validation runs when the Snakefile is parsed, before any job: every problem is
reported as one line that names the key. The schema is the one place for defaults:
validation fills them in, and code reads `settings["key"]` after that.
"""

import copy
import logging
import math
import os

import jsonschema

from okapi_pipeline.cluster.gpu_jobs import BF16_PEAK_TFLOPS, gpu_class
from okapi_pipeline.data.okapi_release import DATASETS, missing_languages, read_checksums
from okapi_pipeline.data.split import source_groups
from okapi_pipeline.languages import ISO_639_1, SOURCE_LANGUAGE
from okapi_pipeline.schema import ConfigError, _set_defaults, llm_settings_schema, one_line
from okapi_pipeline.schema import load_schema as load_schema  # the workflow and the tools load it from here

log = logging.getLogger(__name__)

SPLITS = ("sft", "rm", "ppo")
BENCHMARKS = ("arc", "hellaswag", "mmlu")
LLM_STAGES = ("self_instruct", "translation", "ranking", "back_translation")
# Every stage with LLM settings of its own: the LLM stages and benchmark translation.
STAGES_WITH_LLM = (*LLM_STAGES, "benchmarks")
# Backends that run a model on the job's own CPU or GPU (the other, openai, calls an API).
LOCAL_BACKENDS = ("hf", "mt")
# A stage whose settings start from another stage's: back-translation uses the ranking
# judge's translator unless `back_translation.llm` says otherwise.
STAGE_PARENTS = {"back_translation": "ranking"}
# Stages that are not translations: the `mt` backend cannot serve them.
NOT_TRANSLATION = ("self_instruct", "ranking")


def llm_defaults() -> dict:
    """Every LLM-layer setting with its schema default (those without one left out)."""
    properties = llm_settings_schema()["properties"]
    return {key: copy.deepcopy(sub["default"]) for key, sub in properties.items() if "default" in sub}


def answer_settings(settings: dict) -> dict:
    """The LLM settings that shape the answers (a rule's params: a change reruns the job).

    The schema marks the others: `x-operational` ones (limits, cache, prices, budget)
    change no answer, nor do those of another backend (`x-backend`).
    """
    properties = llm_settings_schema()["properties"]

    def shapes_answers(key: str) -> bool:
        sub = properties.get(key, {})
        return not sub.get("x-operational") and sub.get("x-backend", settings["backend"]) == settings["backend"]

    return {key: value for key, value in settings.items() if shapes_answers(key)}


def validate_config(config: dict, schema: dict) -> dict:
    """Check `config` against the schema and the cross-key rules; fill defaults.

    Raises ConfigError with one line naming the first offending key.
    """
    config = _renamed_keys(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(one_line(best))
    _set_defaults(config, schema)
    if isinstance(config["training"]["scope"], str):
        config["training"]["scope"] = [config["training"]["scope"]]
    # LLM defaults go into the top-level block only: a stage's block overrides it.
    _set_defaults(config["llm"], schema["$defs"]["llm_settings"])
    _check_cross_keys(config)
    return config


def _renamed_keys(config: dict) -> dict:
    """A copy with the names of the previous release replaced, one warning line each
    (read until the next release): `evaluation.checkpoints` is now
    `evaluation.released_models`, and the variant `rlhf` is now `ppo`."""
    config = copy.deepcopy(config)
    evaluation = config.get("evaluation") or {}
    if "checkpoints" in evaluation:
        log.warning("config: 'evaluation.checkpoints' is deprecated: rename it 'evaluation.released_models'")
        # Merged: the demo config's `released_models: {}` is under a user's old name.
        evaluation["released_models"] = {**(evaluation.get("released_models") or {}), **evaluation.pop("checkpoints")}
    for name, entry in (evaluation.get("released_models") or {}).items():
        compared = (entry or {}).get("compare_with") or {}
        if compared.get("variant") == "rlhf":
            log.warning(
                f"config: variant 'rlhf' in 'evaluation.released_models.{name}.compare_with' is deprecated: use 'ppo'"
            )
            compared["variant"] = "ppo"
    return config


def _check_cross_keys(config: dict) -> None:
    _check_account_settings(config)
    for index, lang in enumerate(config["languages"]):
        if lang not in ISO_639_1:
            raise ConfigError(f"config: 'languages.{index}': unknown language code '{lang}' (ISO 639-1 expected)")
    if SOURCE_LANGUAGE in config["languages"]:
        for split in released_splits(config):
            raise ConfigError(
                f"config: 'split.{split}.source': the Okapi release has no English data (it was translated from "
                f"English); for en make the split here (source: pipeline) or remove en from languages"
            )
    for index, model in enumerate(config["models"]):
        if model not in config["base_models"]:
            raise ConfigError(
                f"config: 'models.{index}': '{model}' is not an entry of base_models "
                f"({', '.join(sorted(config['base_models']))})"
            )
    for bench in BENCHMARKS:
        source = config["benchmarks"][bench]
        needed = {"local": "path", "hub": "hub_id", "translate": "path"}[source["source"]]
        if needed not in source and not (source["source"] == "translate" and "hub_id" in source):
            alternative = " or hub_id" if source["source"] == "translate" else ""
            raise ConfigError(
                f"config: missing key 'benchmarks.{bench}.{needed}'{alternative} (source is {source['source']})"
            )
        protocol = config["evaluation"][bench]
        if protocol["num_fewshot"] > 0 and not protocol["fewshot_split"]:
            raise ConfigError(f"config: 'evaluation.{bench}.fewshot_split' is needed for num_fewshot > 0")
    _check_released_models(config)
    # The benchmark translation is an LLM stage too (benchmarks.llm overrides llm).
    for stage, llm in llm_settings_by_stage(config).items():
        if llm["backend"] == "openai" and not llm.get("api_key_env"):
            raise ConfigError(f"config: '{stage}.llm.api_key_env' is needed for the openai backend")
        if llm["backend"] != "openai" and llm["mode"] == "batch":
            raise ConfigError(f"config: '{stage}.llm.mode': batch needs the openai backend")
        if llm["backend"] == "mt" and llm["engine"] == "ctranslate2" and llm["model"] not in config["base_models"]:
            raise ConfigError(
                f"config: '{stage}.llm.model': engine ctranslate2 needs a base_models entry "
                f"(converted once into resources/ctranslate2/), got '{llm['model']}'"
            )
        if llm["backend"] == "mt" and stage in NOT_TRANSLATION:
            what = (
                "the ranking judge (set back_translation.llm for an mt back-translation)"
                if stage == "ranking"
                else "self-instruct"
            )
            raise ConfigError(f"config: '{stage}.llm.backend': mt only translates; it cannot be {what}")
    for name, entry in config["translator_comparison"]["translators"].items():
        llm = {**llm_settings(config, "translation"), **entry}
        if llm["backend"] == "openai" and not llm.get("api_key_env"):
            raise ConfigError(f"config: 'translator_comparison.translators.{name}.api_key_env' is needed for openai")
    seeds = config["self_instruct"]
    if seed_tasks_path(config) != seeds["seed_tasks"] and not seeds["seed_tasks_sha256"]:
        raise ConfigError("config: missing key 'self_instruct.seed_tasks_sha256' (seed_tasks is a URL)")
    try:
        source_groups(split_plan(config))
    except ValueError as error:
        raise ConfigError(f"config: {error}") from None
    release = config["okapi_release"]
    if (
        released_splits(config)
        and not release["path"]
        and not all(f in release["url"] for f in ("{dataset}", "{file}"))
    ):
        raise ConfigError("config: 'okapi_release.url': it needs {dataset} and {file} (or set okapi_release.path)")
    responder = config["ranking"]["responses_from"]
    if responder != "own" and responder not in config["base_models"]:
        raise ConfigError(f"config: 'ranking.responses_from': '{responder}' is neither own nor a base_models entry")
    if gpu_class(config["site"]["gpu"]) is None:
        raise ConfigError(
            f"config: 'site.gpu': {config['site']['gpu']!r} is not a GPU class the runtimes know "
            f"({', '.join(name.upper() for name, _ in BF16_PEAK_TFLOPS)})"
        )
    for name in ("sft", "reward_model", "dpo"):
        section = config[name]
        micro = section["per_device_batch_size"]
        if micro != "auto" and section["effective_batch_size"] % micro:
            raise ConfigError(f"config: '{name}.effective_batch_size' must be a multiple of per_device_batch_size")


def _check_released_models(config: dict) -> None:
    checkpoints = config["evaluation"]["released_models"]
    if not config["models"] and not checkpoints:
        raise ConfigError("config: 'models' is empty and there are no evaluation.released_models: nothing to evaluate")
    for name, entry in checkpoints.items():
        if name in config["base_models"]:
            raise ConfigError(f"config: 'evaluation.released_models.{name}': the name is already a base_models entry")
        for lang in entry.get("languages") or []:
            if lang not in config["languages"]:
                raise ConfigError(
                    f"config: 'evaluation.released_models.{name}.languages': '{lang}' is not in languages"
                )


def llm_settings_by_stage(config: dict) -> dict:
    """The LLM settings of every stage that has its own (STAGES_WITH_LLM)."""
    return {stage: llm_settings(config, stage) for stage in STAGES_WITH_LLM}


def llm_settings(config: dict, stage: str) -> dict:
    """The LLM-layer settings of one stage: the `llm` block with the stage's overrides."""
    merged = dict(config["llm"])
    if stage in STAGE_PARENTS:
        merged.update(config.get(STAGE_PARENTS[stage], {}).get("llm") or {})
    merged.update(config.get(stage, {}).get("llm") or {})
    return merged


def translator_settings(config: dict, name: str) -> dict:
    """One translator of `translator_comparison`: the translation stage's settings with
    the entry's overrides (an empty list of translators compares the stage's own)."""
    return {**llm_settings(config, "translation"), **config["translator_comparison"]["translators"].get(name, {})}


def translator_names(config: dict) -> list[str]:
    return list(config["translator_comparison"]["translators"]) or ["translation"]


# The rules that call an LLM, by the stage whose LLM settings they use.
LLM_RULES = {
    "self_instruct": "self_instruct",
    "translate_shard": "translation",
    "back_translate_shard": "back_translation",
    "rank_shard": "ranking",
    "translate_benchmark": "benchmarks",
}


def missing_api_keys(config: dict, rules) -> str | None:
    """One line naming each API key variable that the given rules' stages need and the
    environment lacks, or None. Checked when a real run starts, before its first job."""
    missing: dict[str, list[str]] = {}
    for stage in sorted({LLM_RULES[rule] for rule in rules if rule in LLM_RULES}):
        settings = llm_settings(config, stage)
        if settings["backend"] == "openai" and not os.environ.get(settings["api_key_env"]):
            missing.setdefault(settings["api_key_env"], []).append(stage)
    if not missing:
        return None
    return (
        "; ".join(
            f"the environment variable {variable} is not set: the {', '.join(stages)} "
            f"stage{'s' if len(stages) > 1 else ''} will call the API with it"
            for variable, stages in missing.items()
        )
        + " (nothing was run)"
    )


def stage_llm_settings(config: dict, stage: str, answer_params: dict) -> dict:
    """A job's LLM settings: those that shape answers from its rule's params (they decide
    reruns), operational ones (limits, cache, prices, budget) from config (changing them
    reruns nothing), with the limits cut to the job's share of the account's."""
    return account_share(config, {**llm_settings(config, stage), **answer_params})


# Settings of the whole API account, read from the top-level `llm` block only.
ACCOUNT_SETTINGS = ("api_jobs", "api_jobs_at_once")


def account_share(config: dict, settings: dict) -> dict:
    """One API job's settings with requests_per_minute and tokens_per_minute divided by
    `llm.api_jobs_at_once`: the workflow runs at most that many API jobs at once (the
    global resource `api_jobs`), so together they never ask more than the limits."""
    jobs_at_once = config["llm"]["api_jobs_at_once"]
    limits = ("requests_per_minute", "tokens_per_minute")
    return {**settings, **{key: settings[key] / jobs_at_once for key in limits if settings[key] is not None}}


def _check_account_settings(config: dict) -> None:
    """api_jobs and api_jobs_at_once hold for every stage: a stage's block may not set them."""
    overrides = {f"{stage}.llm": config.get(stage, {}).get("llm") or {} for stage in STAGES_WITH_LLM}
    for name, entry in config["translator_comparison"]["translators"].items():
        overrides[f"translator_comparison.translators.{name}"] = entry
    for path, block in overrides.items():
        for key in ACCOUNT_SETTINGS:
            if key in block:
                raise ConfigError(
                    f"config: '{path}.{key}': set it in the top-level 'llm' block (it holds for all stages)"
                )


def seed_tasks_path(config: dict) -> str:
    """The seed tasks file: a local path as given, a URL's copy fetched into resources/."""
    source = config["self_instruct"]["seed_tasks"]
    return "resources/self_instruct/seed_tasks.jsonl" if source.startswith(("http://", "https://")) else source


def translated_splits(config: dict) -> list[str]:
    """The splits this pipeline makes (split, translate; rm also ranked), in split order."""
    return [split for split in SPLITS if config["split"][split]["source"] == "pipeline"]


def released_splits(config: dict) -> list[str]:
    """The splits taken from the released Okapi data, in split order."""
    return [split for split in SPLITS if config["split"][split]["source"] == "okapi_release"]


def split_sizes(config: dict) -> dict[str, int]:
    """The size of each split the pipeline makes (a released split has its file's)."""
    return {split: config["split"][split]["size"] for split in translated_splits(config)}


def split_plan(config: dict) -> dict[str, dict]:
    """Sources and size of each split the pipeline makes, in split order."""
    return {
        split: {"sources": config["split"][split]["sources"], "size": config["split"][split]["size"]}
        for split in translated_splits(config)
    }


def self_instruct_needed(config: dict) -> bool:
    """Whether a split the pipeline makes draws on the Self-Instruct generations."""
    return any("self_instruct" in entry["sources"] for entry in split_plan(config).values())


def ranking_responders(config: dict) -> list[str]:
    """The base models whose SFT models answer the rm prompts that are ranked.

    `own`: every trained model ranks its own samples; a model name: that model's
    samples are ranked once per language and every model's reward model learns from them.
    None when the preference pairs are the released ones.
    """
    if config["split"]["rm"]["source"] == "okapi_release":
        return []
    source = config["ranking"]["responses_from"]
    return list(config["models"]) if source == "own" else [source]


def check_files(config: dict) -> None:
    """The config checks that read the file system, relative to the working directory
    (Snakemake's): a benchmark folder that does not exist, and a language that a released
    set lacks, are config errors before anything is planned."""
    for bench in BENCHMARKS:
        source = config["benchmarks"][bench]
        if source["source"] in ("local", "translate") and "path" in source and not os.path.isdir(source["path"]):
            raise ConfigError(f"config: 'benchmarks.{bench}.path': no folder {source['path']}")
    released = released_splits(config)
    if not released:
        return
    table = config["okapi_release"]["checksums"]
    if not os.path.isfile(table):
        raise ConfigError(f"config: 'okapi_release.checksums': no file {table}")
    checksums = read_checksums(table)
    for split in released:
        missing = missing_languages(checksums, split, config["languages"])
        if missing:
            raise ConfigError(
                f"config: 'split.{split}.source': the Okapi release has no {DATASETS[split]} file for "
                f"{', '.join(missing)} (see {table})"
            )


def shard_count(config: dict, split: str) -> int:
    """Translation shards of a split: fixed by config so the DAG is static."""
    return math.ceil(config["split"][split]["size"] / config["translation"]["items_per_shard"])


def shard_ids(config: dict, split: str) -> list[str]:
    return [f"{index:04d}" for index in range(shard_count(config, split))]
