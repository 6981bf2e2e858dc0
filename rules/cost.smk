"""The cost gate: token and USD estimates of the API stages before any paid request."""


rule cost_estimate:
    """Token counts and USD per API stage, language and model at the configured prices."""
    input:
        # Only what the stages that will run need: nothing of a released split.
        instructions="results/data/en/instructions.jsonl" if TRANSLATED_SPLITS else [],
        seed_tasks=seed_tasks_path(config) if self_instruct_needed(config) else [],
        translation_prompt=config["translation"]["prompt"],
        self_instruct_prompt=config["self_instruct"]["prompt"],
        rank_prompt=config["ranking"]["prompt"],
        back_translation_prompt=config["ranking"]["back_translation_prompt"],
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
        languages=LANGUAGES,
        responders=ranking_responders(config),
        sizes=split_sizes(config),
        self_instruct=config["self_instruct"] if self_instruct_needed(config) else None,
        ranking=config["ranking"],
        llm={stage: llm_settings(config, stage) for stage in LLM_STAGES},
    script:
        "../scripts/cost_estimate.py"
