"""Scores with lm-evaluation-harness under the paper's protocol."""


rule evaluate:
    """All benchmarks for one (model, variant, language) in one lm-eval call."""
    input:
        unpack(evaluation_inputs),
    output:
        **score_outputs(),
    log:
        "logs/evaluate/{model}/{variant}/{lang}.log",
    benchmark:
        "logs/timing/evaluate/{model}/{variant}/{lang}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 1
    resources:
        **gpu_rule_resources("evaluate"),
    params:
        # Without the released models: adding one reruns no other evaluation.
        protocol={
            key: value
            for key, value in config["evaluation"].items()
            if key != "released_models"
        },
        benchmarks=list(BENCHMARKS),
        workdir="results/eval_tasks/{model}/{variant}/{lang}",
    script:
        "../scripts/evaluate.py"


rule scores:
    """Target: every score."""
    input:
        all_scores(),


rule fetch_released_model:
    """Download a released model from the hub (login node: compute nodes have no network)."""
    output:
        directory("resources/released_models/{released}/{lang_or_all}"),
    log:
        "logs/released_models/{released}/{lang_or_all}.log",
    wildcard_constraints:
        released=alternation(
            [name for name, entry in RELEASED_MODELS.items() if "hub_id" in entry]
        ),
        lang_or_all=alternation([*LANGUAGES, "all"]),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        source=released_model_hub_source,
    script:
        "../scripts/fetch_base_model.py"


rule released_model_scores:
    """Target: the scores of the released models (no training)."""
    input:
        released_score_files(),
