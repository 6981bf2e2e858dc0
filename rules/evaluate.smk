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
        "benchmarks/evaluate/{model}/{variant}/{lang}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 1
    resources:
        **gpu_resources("evaluate"),
    params:
        # Without the checkpoint list: adding a checkpoint reruns no other evaluation.
        protocol={
            key: value
            for key, value in config["evaluation"].items()
            if key != "checkpoints"
        },
        benchmarks=list(BENCHMARKS),
        workdir="results/eval_tasks/{model}/{variant}/{lang}",
    script:
        "../scripts/evaluate.py"


rule scores:
    """Target: every score."""
    input:
        all_scores(),


rule fetch_checkpoint:
    """Download an evaluation-only checkpoint from the hub (login node: compute nodes have no network)."""
    output:
        directory("resources/checkpoints/{checkpoint}/{lang_or_all}"),
    log:
        "logs/checkpoints/{checkpoint}/{lang_or_all}.log",
    wildcard_constraints:
        checkpoint=alternation(
            [name for name, entry in CHECKPOINTS.items() if "hub_id" in entry]
        ),
        lang_or_all=alternation([*LANGUAGES, "all"]),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        source=checkpoint_hub_source,
    script:
        "../scripts/fetch_base_model.py"


rule checkpoint_scores:
    """Target: the scores of the evaluation-only checkpoints (no training)."""
    input:
        checkpoint_score_files(),
