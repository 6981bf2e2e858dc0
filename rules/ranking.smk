"""Ranked responses: sample K responses, translate back to English, rank, make pairs."""


rule generate_responses:
    """K sampled responses from the SFT model for every prompt of one translated rm shard:
    one GPU job per shard, so no job outlasts a cluster's time limit and ranking starts
    as soon as its shard is answered."""
    input:
        model=responding_sft_model,
        prompts="results/data/{lang}/rm/shards/{shard}.jsonl",
    output:
        "results/rankings/{model}/{lang}/shards/{shard}.responses.jsonl",
    log:
        "logs/ranking/{model}/{lang}/{shard}.responses.log",
    benchmark:
        "logs/timing/ranking/{model}/{lang}/{shard}.responses.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **gpu_rule_resources("generate_responses"),
    params:
        settings=config["ranking"],
        # Answers so far, outside the output (which Snakemake deletes before a rerun): a
        # killed job resumes where it stopped.
        progress="results/checkpoints/{model}/{lang}/responses/{shard}.progress.jsonl",
    script:
        "../scripts/generate_responses.py"


rule back_translate_shard:
    """Back-translate one shard of responses to English with the back-translation stage's own translator."""
    input:
        unpack(back_translation_inputs),
    output:
        "results/rankings/{model}/{lang}/shards/{shard}.english.jsonl",
    log:
        "logs/ranking/{model}/{lang}/{shard}.back_translation.log",
    benchmark:
        "logs/timing/ranking/{model}/{lang}/{shard}.back_translation.tsv"
    wildcard_constraints:
        lang=alternation(TRANSLATION_TARGETS),
    group:
        shard_group("back_translation", "back_translate")
    localrule: llm_on_login_node("back_translation")
    conda:
        "../envs/data.yaml"
    resources:
        **llm_job_resources("back_translate_shard", "back_translation"),
    params:
        llm=llm_answer_params("back_translation"),
        cache_name="ranking/{model}/{lang}/{shard}.back_translation",
    script:
        "../scripts/back_translate_shard.py"


rule rank_shard:
    """Back-translate one shard of responses to English and rank them with the judge."""
    input:
        unpack(ranking_inputs),
    output:
        ranked="results/rankings/{model}/{lang}/shards/{shard}.jsonl",
        rejects="results/rankings/{model}/{lang}/shards/{shard}.rejects.jsonl",
        report="results/rankings/{model}/{lang}/shards/{shard}.report.json",
    log:
        "logs/ranking/{model}/{lang}/{shard}.log",
    benchmark:
        "logs/timing/ranking/{model}/{lang}/{shard}.tsv"
    group:
        shard_group("ranking", "rank")
    localrule: llm_on_login_node("ranking")
    conda:
        "../envs/data.yaml"
    resources:
        **llm_job_resources("rank_shard", "ranking"),
    params:
        llm=llm_answer_params("ranking"),
        cache_name="ranking/{model}/{lang}/{shard}",
    script:
        "../scripts/rank_shard.py"


rule preference_pairs:
    """The rankings as (chosen, rejected) pairs in the released format, in the target language."""
    input:
        ranked_shards,
    output:
        "results/rankings/{model}/{lang}/pairs.jsonl",
    log:
        "logs/ranking/{model}/{lang}/pairs.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/preference_pairs.py"


rule rankings:
    """Target: preference pairs for every (responding model, language), or the released ones."""
    input:
        expand(
            "results/rankings/{model}/{lang}/pairs.jsonl",
            model=ranking_responders(config) or [RELEASE_PAIRS],
            lang=LANGUAGES,
        ),
