"""The cost of the API stages: token counts (each paid job's budget gate prices its
stage's rows) and the estimate in USD at the configured prices."""


rule cost_tokens:
    """Requests, input and output tokens and segments per API stage, language and model."""
    input:
        # Only what the stages that will run need: nothing of a released split.
        instructions="results/data/en/instructions.jsonl" if TRANSLATED_SPLITS else [],
        seed_tasks=seed_tasks_path(config) if self_instruct_needed(config) else [],
        translation_prompt=config["translation"]["prompt"],
        self_instruct_prompt=config["self_instruct"]["prompt"],
        rank_prompt=config["ranking"]["prompt"],
        back_translation_prompt=config["ranking"]["back_translation_prompt"],
        benchmark_prompt=config["benchmarks"]["prompt"],
        english_benchmarks=english_benchmark_files(),
    output:
        "results/cost/tokens.csv",
    log:
        "logs/cost/tokens.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        # No prices or budgets here: changing them reruns neither this nor any paid job.
        languages=LANGUAGES,
        responders=ranking_responders(config),
        sizes=split_sizes(config),
        self_instruct=self_instruct_counts(),
        ranking=ranking_counts(),
        # The API model of each stage: tiktoken counts with its encoding (another
        # model counts differently, so it reruns this).
        models=counting_models(llm_settings_by_stage(config)),
        stages=list(STAGES_WITH_LLM),
        benchmarks=benchmark_translation_sources(),
    script:
        "../scripts/cost_tokens.py"


rule cost_estimate:
    """Token counts and USD per API stage, language and model at the configured prices."""
    input:
        "results/cost/tokens.csv",
    output:
        report(
            "results/cost/estimate.csv",
            caption="../report/cost_estimate.rst",
            category="Cost",
        ),
    log:
        "logs/cost/estimate.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        llm=llm_settings_by_stage(config),
    script:
        "../scripts/cost_estimate.py"
