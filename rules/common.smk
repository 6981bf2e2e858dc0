"""Config checks, wildcard constraints, input functions and target lists."""

import functools
import os
import re
import sys
from types import SimpleNamespace

from okapi_pipeline.cluster.gpu_jobs import GPU_RULES, model_gpu_job, read_measurements
from okapi_pipeline.data.joint import joint_settings
from okapi_pipeline.training.model_card import STAGE_SPLITS
from okapi_pipeline.config import (
    BENCHMARKS,
    LOCAL_BACKENDS,
    STAGES_WITH_LLM,
    SPLITS,
    ConfigError,
    answer_settings,
    check_files,
    llm_settings,
    llm_settings_by_stage,
    load_schema,
    ranking_responders,
    released_splits,
    seed_tasks_path,
    self_instruct_needed,
    shard_ids,
    split_plan,
    split_sizes,
    translated_splits,
    translator_names,
    translator_settings,
    validate_config,
)
from okapi_pipeline.languages import SOURCE_LANGUAGE, target_languages
from okapi_pipeline.data.okapi_release import DATASETS, expected_file, read_checksums
from okapi_pipeline.report.cost import counting_models
from okapi_pipeline.schema import MT_ARCHITECTURES

try:
    # Defaults filled in place, so `config` everywhere (scripts included) sees them.
    config.update(validate_config(config, load_schema()))
    check_files(config)
except ConfigError as error:
    # One line, before any job runs.
    sys.exit(str(error))

LANGUAGES = config["languages"]
# The languages translated into: English (the control) trains on the English splits themselves.
TRANSLATION_TARGETS = target_languages(LANGUAGES)
MODELS = config["models"]
# Splits this pipeline makes (translated; rm also ranked) and splits taken from the
# released Okapi data (rules/okapi_release.smk).
TRANSLATED_SPLITS = translated_splits(config)
RELEASED_SPLITS = released_splits(config)
BUILT_MODELS = [
    name for name, entry in config["base_models"].items() if "build" in entry
]
HUB_MODELS = [
    name for name, entry in config["base_models"].items() if "hub_id" in entry
]
# What each base model trains: one model per language (the paper) and/or one joint
# model on every language's data, "joint" in the language's place in its paths.
PER_LANGUAGE = "per_language" in config["training"]["scope"]
JOINT = "joint" in config["training"]["scope"]
TRAINING_UNITS = (LANGUAGES if PER_LANGUAGE else []) + (["joint"] if JOINT else [])
METHODS = config["rlhf"]["methods"]
# Scored variants: base, SFT, then one per RLHF method (ppo: the paper's; dpo); those
# of the joint models are joint-sft, joint-ppo, joint-dpo.
TRAINED_VARIANTS = ["sft", *METHODS]
VARIANTS = [
    "base",
    *(TRAINED_VARIANTS if PER_LANGUAGE else []),
    *(f"joint-{variant}" for variant in TRAINED_VARIANTS if JOINT),
]
# Released models, evaluated only: scored under the same protocol as variant "released".
RELEASED_MODELS = config["evaluation"]["released_models"]


def alternation(values):
    """A wildcard regex matching exactly these values (never matching when empty)."""
    return "|".join(re.escape(v) for v in values) if values else "(?!)"


# The {lang} of a training rule: a language, or "joint".
LANGUAGE_OR_JOINT = alternation([*LANGUAGES, "joint"])


wildcard_constraints:
    lang=alternation(LANGUAGES),
    model=alternation([*config["base_models"], *RELEASED_MODELS]),
    split=alternation(SPLITS),
    bench=alternation(BENCHMARKS),
    variant=alternation([*VARIANTS, "released"]),
    shard=r"\d{4}",


# ---- base models -------------------------------------------------------------


def base_model_dir(name):
    return f"resources/models/{name}"


def model_build_settings(wildcards):
    return config["base_models"][wildcards.model]["build"]


def tiny_model_inputs(wildcards):
    """The corpus, and the shared tokenizer for a causal model (a translation model
    trains its own, with language tokens)."""
    inputs = {"corpus": config["tiny_models"]["corpus"]}
    if model_build_settings(wildcards)["architecture"] not in MT_ARCHITECTURES:
        inputs["tokenizer"] = "resources/tokenizer"
    return inputs


def model_hub_source(wildcards):
    entry = config["base_models"][wildcards.model]
    return {"hub_id": entry["hub_id"], "revision": entry["revision"]}


def model_dir(wildcards):
    """The model a (model, variant, lang) evaluation scores."""
    if wildcards.variant == "base":
        return base_model_dir(wildcards.model)
    if wildcards.variant == "released":
        return released_model_dir(wildcards.model, wildcards.lang)
    if wildcards.variant.startswith("joint-"):
        return f"results/models/{wildcards.model}/joint/{wildcards.variant.removeprefix('joint-')}"
    return f"results/models/{wildcards.model}/{wildcards.lang}/{wildcards.variant}"


def base_model_of(wildcards):
    return base_model_dir(wildcards.model)


# ---- what a GPU job asks for -------------------------------------------------------
# Sized from the model a job loads, the site's GPUs (config `site`) and the measured rates
# by okapi_pipeline.cluster.gpu_jobs; where jobs run (partitions, account) is slurm/'s.
GPU_MEASUREMENTS = read_measurements(
    os.path.join(workflow.basedir, "reference", "gpu_measurements.csv")
)


@functools.cache
def gpu_job_for(stage, model, joint):
    """Computed once per (stage, model, joint): every job of a rule asks the same."""
    return model_gpu_job(stage, model, config, GPU_MEASUREMENTS, joint)


def model_wildcard(wildcards):
    return wildcards.model


def gpu_resources(stage, model_of=model_wildcard):
    """Resources of a job of `stage`, sized for the model `model_of(wildcards)` names (the
    job's {model} by default); the runtime grows with each attempt."""

    def job(wildcards):
        joint = getattr(wildcards, "lang", None) == "joint"
        return gpu_job_for(stage, model_of(wildcards), joint)

    if config["site"]["gpu_request"] == "gres":
        gpus = {"gres": lambda wildcards: f"gpu:{job(wildcards)['gpu']}"}
    else:
        gpus = {"gpu": lambda wildcards: job(wildcards)["gpu"]}
    return {
        **gpus,
        "mem_mb": lambda wildcards: job(wildcards)["mem_mb"],
        "runtime": lambda wildcards, attempt: job(wildcards)["runtime"] * attempt,
    }


def gpu_rule_resources(rule):
    """Resources of one of the GPU rules (GPU_RULES: rule -> stage), for the job's {model}."""
    return gpu_resources(GPU_RULES[rule])


def training_settings(stage):
    """A training rule's settings: a joint run's as okapi_pipeline.data.joint scales them."""

    def settings(wildcards):
        if wildcards.lang == "joint":
            return joint_settings(stage, config[stage], len(LANGUAGES))
        return config[stage]

    return settings


def model_card_facts(stage):
    """What a trained model's card says beyond its training summary (okapi_pipeline.training.model_card)."""

    def facts(wildcards):
        base = config["base_models"][wildcards.model]
        return {
            "stage": stage,
            "base_model": base.get("hub_id", wildcards.model),
            "languages": LANGUAGES if wildcards.lang == "joint" else [wildcards.lang],
            "data_sources": {
                split: config["split"][split]["source"] for split in STAGE_SPLITS[stage]
            },
        }

    return facts


def llm_job_resources(job, stage):
    """Resources of a job of an LLM stage: on a local model (`hf`, `mt`) a GPU sized for
    the stage's model, in the GPU partition; on an API backend an API job's
    (api_job_resources). The partitions are read here, as slurm/config.yaml names
    them, because the profile cannot tell which backend a rule's jobs use."""
    if llm_is_remote(stage):
        return api_job_resources()

    def stage_model(wildcards):
        return llm_settings(config, stage)["model"]

    return {
        **gpu_resources(job, stage_model),
        **slurm_partition("OKAPI_GPU_PARTITION", "SBATCH_PARTITION"),
    }


def translator_model(wildcards):
    return translator_settings(config, wildcards.translator)["model"]


# ---- the LLM-call layer --------------------------------------------------------


def llm_for(stage):
    """The stage's LLM settings for params: no secrets, only the key's variable name.

    A local (`hf`, `mt`) model that names a base model is resolved to its local directory.
    """
    return local_model_resolved(llm_settings(config, stage))


def local_model_resolved(settings):
    if (
        settings["backend"] in LOCAL_BACKENDS
        and settings["model"] in config["base_models"]
    ):
        name = settings["model"]
        settings = {**settings, "model": base_model_dir(name)}
        if uses_ctranslate2(settings):
            settings["ctranslate2_dir"] = ctranslate2_dir(name)
    return settings


def uses_ctranslate2(settings):
    return settings["backend"] == "mt" and settings["engine"] == "ctranslate2"


def ctranslate2_dir(name):
    return f"resources/ctranslate2/{name}"


def llm_answer_params(stage):
    """Only the LLM settings that shape answers, as a rule param.

    Operational ones (limits, cache, budget) the script reads from config, so that
    changing them reruns no finished job.
    """
    return answer_settings(llm_for(stage))


def llm_model_input(stage):
    """The local model directory an `hf`- or `mt`-backend stage needs as input, if any."""
    return local_model_input(llm_settings(config, stage))


def local_model_input(settings):
    """The local model's directory (and its CTranslate2 conversion), if any."""
    if (
        settings["backend"] in LOCAL_BACKENDS
        and settings["model"] in config["base_models"]
    ):
        converted = (
            [ctranslate2_dir(settings["model"])] if uses_ctranslate2(settings) else []
        )
        return [base_model_dir(settings["model"]), *converted]
    return []


def cost_tokens_input(stage):
    """The token counts a paid (openai) job prices its stage's rows of before any request
    (none for a free one). Taken with a budget or without, so that setting one changes no
    job's inputs; `ancient`: recounted tokens rerun no job either."""
    if llm_is_remote(stage):
        return ancient("results/cost/tokens.csv")
    return []


def self_instruct_counts():
    """What the token counts of self-instruct depend on (None: no split draws on it)."""
    if not self_instruct_needed(config):
        return None
    return {
        key: config["self_instruct"][key]
        for key in ("count", "max_attempts", "tasks_per_request")
    }


def ranking_counts():
    """What the token counts of ranking depend on (K responses of at most max_new_tokens)."""
    return {
        key: config["ranking"][key]
        for key in ("responses_per_prompt", "max_new_tokens")
    }


def llm_is_remote(stage):
    """The stage calls an API (it needs the network, no GPU)."""
    return llm_settings(config, stage)["backend"] == "openai"


def llm_on_login_node(stage):
    """A stage's API jobs are localrules unless `llm.api_jobs` sends them to the cluster."""
    return llm_is_remote(stage) and API_JOBS_ON_LOGIN_NODE


API_JOBS_ON_LOGIN_NODE = config["llm"]["api_jobs"] == "login"
# At most this many API jobs at once, of all stages: each paces itself to this share
# of the account's limits (okapi_pipeline.config.account_share). Set from config, not
# `--resources`, so that the cap and the share are one number.
workflow.register_resource("api_jobs", config["llm"]["api_jobs_at_once"])


def api_job_resources():
    """One of the account's `api_jobs` slots; on the cluster, the partition with
    outbound network."""
    if API_JOBS_ON_LOGIN_NODE:
        return {"api_jobs": 1}
    return {
        "api_jobs": 1,
        **slurm_partition("OKAPI_API_PARTITION", "SBATCH_PARTITION"),
    }


def slurm_partition(*variables):
    """The partition the first set environment variable names (none: the cluster's default)."""
    partition = next(filter(None, map(os.environ.get, variables)), None)
    return {"slurm_partition": partition} if partition else {}


def shard_group(stage, group):
    """Local-model shards share cluster jobs (slurm/ says how many); API shards run one a job."""
    return None if llm_is_remote(stage) else group


# ---- data ----------------------------------------------------------------------


def translated_shards(wildcards):
    return expand(
        "results/data/{lang}/{split}/shards/{shard}.jsonl",
        lang=wildcards.lang,
        split=wildcards.split,
        shard=shard_ids(config, wildcards.split),
    )


def translation_reports_by_split(wildcards):
    """Every shard report of one language, by split: the QA counts rejects per split."""
    return {
        split: [
            f"results/data/{wildcards.lang}/{split}/shards/{shard}.report.json"
            for shard in shard_ids(config, split)
        ]
        for split in TRANSLATED_SPLITS
    }


def translation_reports(wildcards):
    return [
        path
        for paths in translation_reports_by_split(wildcards).values()
        for path in paths
    ]


def ranked_shards(wildcards):
    return expand(
        "results/rankings/{model}/{lang}/shards/{shard}.jsonl",
        model=wildcards.model,
        lang=wildcards.lang,
        shard=shard_ids(config, "rm"),
    )


def self_instruct_inputs(wildcards):
    return {
        "seed_tasks": seed_tasks_path(config),
        "prompt": config["self_instruct"]["prompt"],
        "model": llm_model_input("self_instruct"),
        "token_counts": cost_tokens_input("self_instruct"),
    }


def english_shards_by_split():
    """The shards of each split made here, by split: what split_instructions writes."""
    return {
        split: [
            f"results/data/en/{split}/shards/{shard}.jsonl"
            for shard in shard_ids(config, split)
        ]
        for split in TRANSLATED_SPLITS
    }


def all_english_shards():
    return [path for paths in english_shards_by_split().values() for path in paths]


def translation_inputs(wildcards):
    return {
        "shard": f"results/data/en/{wildcards.split}/shards/{wildcards.shard}.jsonl",
        "prompt": config["translation"]["prompt"],
        "model": llm_model_input("translation"),
        "token_counts": cost_tokens_input("translation"),
    }


def shard_responses(wildcards):
    """The responses one ranking shard back-translates and ranks: its own generation job's."""
    return f"results/rankings/{wildcards.model}/{wildcards.lang}/shards/{wildcards.shard}.responses.jsonl"


def ranking_inputs(wildcards):
    return {
        "responses": shard_responses(wildcards),
        "prompt": config["ranking"]["prompt"],
        "back_translation_prompt": config["ranking"]["back_translation_prompt"],
        "judge": llm_model_input("ranking"),
        # English responses are ranked as they are: no back-translation job.
        "back_translated": (
            f"results/rankings/{wildcards.model}/{wildcards.lang}/shards/{wildcards.shard}.english.jsonl"
            if SEPARATE_BACK_TRANSLATION and wildcards.lang != SOURCE_LANGUAGE
            else []
        ),
        "token_counts": cost_tokens_input("ranking"),
    }


# Back-translation is a job of its own when its translator is not the judge's (e.g. an
# `mt` model on a GPU node while the judge is an API on the login node).
SEPARATE_BACK_TRANSLATION = llm_settings(config, "back_translation") != llm_settings(
    config, "ranking"
)


def back_translation_inputs(wildcards):
    return {
        "responses": shard_responses(wildcards),
        "prompt": config["ranking"]["back_translation_prompt"],
        "model": llm_model_input("back_translation"),
        "token_counts": cost_tokens_input("back_translation"),
    }


def preference_pairs_for(wildcards):
    """The pairs a model's reward model (or DPO) learns from: the released ones, its
    own, or those of the one model whose responses are ranked for every model
    (`ranking.responses_from`); a joint model learns from every language's."""
    if "rm" in RELEASED_SPLITS:
        return f"results/rankings/{RELEASE_PAIRS}/{wildcards.lang}/pairs.jsonl"
    source = config["ranking"]["responses_from"]
    responder = wildcards.model if source == "own" else source
    return f"results/rankings/{responder}/{wildcards.lang}/pairs.jsonl"


def responding_sft_model(wildcards):
    """The SFT model whose responses to a language's prompts are ranked: that
    language's, or the joint one when only joint models are trained."""
    unit = wildcards.lang if PER_LANGUAGE else "joint"
    return f"results/models/{wildcards.model}/{unit}/sft"


def joint_inputs(pattern):
    """Every language's file of `pattern` (with {lang}), by language: a joint file's inputs."""

    def inputs(wildcards):
        return {
            lang: pattern.format(lang=lang, **dict(wildcards.items()))
            for lang in LANGUAGES
        }

    return inputs


def split_sources(wildcards):
    """The English sources the splits made here draw on (no Self-Instruct run when none does)."""
    needed = {
        source for entry in split_plan(config).values() for source in entry["sources"]
    }
    sources = {
        "alpaca": "results/data/en/instructions.jsonl",
        "self_instruct": "results/data/en/self_instruct.jsonl",
    }
    return {name: path for name, path in sources.items() if name in needed}


# ---- the released Okapi data ------------------------------------------------------

# The released pairs stand where a responding model's rankings would.
RELEASE_PAIRS = "okapi_release"
RELEASE_CHECKSUMS = (
    read_checksums(config["okapi_release"]["checksums"]) if RELEASED_SPLITS else {}
)
SPLIT_OF_DATASET = {dataset: split for split, dataset in DATASETS.items()}


def okapi_release_source(wildcards):
    """Where one released file is read from (the URL or the local folder) and what it must be."""
    expected = expected_file(
        RELEASE_CHECKSUMS, SPLIT_OF_DATASET[wildcards.dataset], wildcards.lang
    )
    settings = config["okapi_release"]
    where = {"dataset": expected["dataset"], "file": expected["file"]}
    source = (
        os.path.join(settings["path"], where["dataset"], where["file"])
        if settings["path"]
        else settings["url"].format(**where)
    )
    return {"source": source, "sha256": expected["sha256"], "size": expected["size"]}


def okapi_release_file(wildcards):
    """The fetched released file a split of one language is converted from."""
    return f"resources/okapi_release/{DATASETS[wildcards.split]}/{wildcards.lang}.json"


def released_data():
    """Every converted released file: SFT records, PPO prompts, pairs."""
    return [
        (
            f"results/rankings/{RELEASE_PAIRS}/{lang}/pairs.jsonl"
            if split == "rm"
            else f"results/data/{lang}/{split}.jsonl"
        )
        for split in RELEASED_SPLITS
        for lang in LANGUAGES
    ]


# ---- benchmarks -----------------------------------------------------------------


def evaluation_inputs(wildcards):
    """The model, and each benchmark's data by the benchmark's name."""
    return {
        "model": model_dir(wildcards),
        **{
            bench: f"results/benchmark_data/{bench}/{wildcards.lang}.json"
            for bench in BENCHMARKS
        },
    }


def score_outputs():
    """Each benchmark's score file of one (model, variant, language), by the benchmark's name."""
    return {
        bench: f"results/scores/{{model}}/{{variant}}/{{lang}}/{bench}.json"
        for bench in BENCHMARKS
    }


# The released layout of a benchmark folder (the one place it is written down):
# {path}/m_arc/{lang}_{split}.json, likewise m_hellaswag and m_mmlu.
RELEASED_FOLDERS = {"arc": "m_arc", "hellaswag": "m_hellaswag", "mmlu": "m_mmlu"}


def benchmark_source(wildcards):
    """Where a job reads its benchmark: the local files by split, or the hub mirror.

    A translated benchmark (`translate`) reads the English ones (en_{split}.json).
    """
    source = config["benchmarks"][wildcards.bench]
    if "path" not in source or source["source"] == "hub":
        return {"source": source["source"], "hub_id": source["hub_id"]}
    folder = f"{source['path']}/{RELEASED_FOLDERS[wildcards.bench]}"
    lang = "en" if source["source"] == "translate" else wildcards.lang
    return {
        "source": source["source"],
        "files": {
            split: f"{folder}/{lang}_{split}.json"
            for split in benchmark_splits(wildcards)
        },
    }


def benchmark_splits(wildcards):
    """The splits evaluation reads: the scored one and the one shots come from."""
    protocol = config["evaluation"][wildcards.bench]
    splits = [protocol["split"]]
    if protocol["num_fewshot"] > 0 and protocol["fewshot_split"] not in splits:
        splits.append(protocol["fewshot_split"])
    return splits


def benchmark_source_files(wildcards):
    """Local released files are inputs (a changed file reruns); hub sources have none."""
    return list(benchmark_source(wildcards).get("files", {}).values())


def released_benchmark_files(wildcards):
    """A released benchmark's local files. Unless `benchmarks.strict`, a missing one is
    left out, so the job runs and marks the benchmark not available in that language
    (and a file added later reruns it)."""
    files = benchmark_source_files(wildcards)
    if config["benchmarks"]["strict"]:
        return files
    return [path for path in files if os.path.exists(path)]


TRANSLATED_BENCHMARKS = [
    b for b in BENCHMARKS if config["benchmarks"][b]["source"] == "translate"
]
RELEASED_BENCHMARKS = [b for b in BENCHMARKS if b not in TRANSLATED_BENCHMARKS]


def benchmark_translation_inputs(wildcards):
    return {
        "english": benchmark_source_files(wildcards),
        "prompt": config["benchmarks"]["prompt"],
        "model": llm_model_input("benchmarks"),
        "token_counts": cost_tokens_input("benchmarks"),
    }


def benchmark_translation_sources():
    """Each benchmark translated here: its English source and the splits it translates."""
    english = {
        bench: SimpleNamespace(bench=bench, lang=SOURCE_LANGUAGE)
        for bench in TRANSLATED_BENCHMARKS
    }
    return {
        bench: {"source": benchmark_source(w), "splits": benchmark_splits(w)}
        for bench, w in english.items()
    }


def english_benchmark_files():
    """The local English files of the benchmarks translated here (the estimate reads them)."""
    return [
        path
        for bench in TRANSLATED_BENCHMARKS
        for path in benchmark_source_files(
            SimpleNamespace(bench=bench, lang=SOURCE_LANGUAGE)
        )
    ]


# ---- choosing a translator ----------------------------------------------------------

TRANSLATORS = translator_names(config)
# API translators run on the login node (the network), local ones on GPU nodes.
REMOTE_TRANSLATORS = [
    name
    for name in TRANSLATORS
    if translator_settings(config, name)["backend"] == "openai"
]
LOCAL_TRANSLATORS = [name for name in TRANSLATORS if name not in REMOTE_TRANSLATORS]


def translator_answer_params(wildcards):
    """The translator's answer-shaping settings, as a param: a change reruns its samples."""
    return answer_settings(
        local_model_resolved(translator_settings(config, wildcards.translator))
    )


def translator_sample_inputs(wildcards):
    return {
        "english": "results/data/en/instructions.jsonl",
        "prompt": config["translation"]["prompt"],
        "back_translation_prompt": config["ranking"]["back_translation_prompt"],
        "model": local_model_input(translator_settings(config, wildcards.translator)),
    }


def translator_samples():
    return expand(
        "results/translators/{translator}/{lang}.json",
        translator=TRANSLATORS,
        lang=TRANSLATION_TARGETS,
    )


# ---- targets ---------------------------------------------------------------------


def all_scores(benchmarks=BENCHMARKS):
    return expand(
        "results/scores/{model}/{variant}/{lang}/{bench}.json",
        model=MODELS,
        variant=VARIANTS,
        lang=LANGUAGES,
        bench=benchmarks,
    ) + released_score_files(benchmarks)


def benchmark_scores(wildcards):
    """Every score of one benchmark: its table's cells."""
    return all_scores([wildcards.bench])


def evaluation_metric(wildcards):
    return config["evaluation"][wildcards.bench]["metric"]


def evaluation_split(wildcards):
    return config["evaluation"][wildcards.bench]["split"]


# The figures set the preference-tuned variants against SFT: the per-language models'
# when they are trained, else the joint ones'.
SCOPE_PREFIX = "" if PER_LANGUAGE else "joint-"
BASELINE = f"{SCOPE_PREFIX}sft"
TUNED_VARIANTS = [f"{SCOPE_PREFIX}{method}" for method in METHODS]


def trained_scores(benchmarks=BENCHMARKS):
    """The SFT and RLHF scores the figures compare (of both scopes when both are on)."""
    return expand(
        "results/scores/{model}/{variant}/{lang}/{bench}.json",
        model=MODELS,
        variant=[variant for variant in VARIANTS if variant != "base"],
        lang=LANGUAGES,
        bench=benchmarks,
    )


def trained_benchmark_scores(wildcards):
    """The SFT and RLHF scores of one benchmark: its figures' points."""
    return trained_scores([wildcards.bench])


def trained_models(wildcards):
    """Every trained model of one (model, language), by stage: their summaries make the curves."""
    # The reward model's folder is rm/ (rules/reward_model.smk), the others' their stage's name.
    folders = {"sft": "sft", **({"reward_model": "rm"} if "ppo" in METHODS else {})}
    folders.update({method: method for method in METHODS})
    return {
        stage: f"results/models/{wildcards.model}/{wildcards.lang}/{folder}"
        for stage, folder in folders.items()
    }


# ---- released models (evaluated only) ---------------------------------------------------


def released_model_languages(name):
    return RELEASED_MODELS[name]["languages"] or LANGUAGES


def released_score_files(benchmarks=BENCHMARKS):
    return [
        f"results/scores/{name}/released/{lang}/{bench}.json"
        for name in RELEASED_MODELS
        for lang in released_model_languages(name)
        for bench in benchmarks
    ]


def released_model_dir(name, lang):
    """A local path as given ({lang} filled in); a hub id is fetched into resources/.

    One copy per language when the hub id names the language, else one for all.
    """
    entry = RELEASED_MODELS[name]
    if "path" in entry:
        return entry["path"].format(lang=lang)
    copy = lang if "{lang}" in entry["hub_id"] else "all"
    return f"resources/released_models/{name}/{copy}"


def released_model_hub_source(wildcards):
    entry = RELEASED_MODELS[wildcards.released]
    return {
        "hub_id": entry["hub_id"].format(lang=wildcards.lang_or_all),
        "revision": entry["revision"],
    }


def released_model_references():
    """Checkpoint name -> the (model, variant) whose published numbers it is set against."""
    return {
        name: (
            [entry["compare_with"]["model"], entry["compare_with"]["variant"]]
            if "compare_with" in entry
            else None
        )
        for name, entry in RELEASED_MODELS.items()
    }
