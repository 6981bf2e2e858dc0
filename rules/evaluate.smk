"""Scores with lm-evaluation-harness under the paper's protocol."""


rule evaluate:
    """All benchmarks for one (model, variant, language) in one lm-eval call."""
    input:
        model=model_dir,
        benchmarks=benchmark_files,
    output:
        expand("results/scores/{{model}}/{{variant}}/{{lang}}/{bench}.json", bench=BENCHMARKS),
    log:
        "logs/evaluate/{model}/{variant}/{lang}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{variant}/{lang}.tsv"
    params:
        protocol=config["evaluation"],
        benchmarks=list(BENCHMARKS),
        workdir="results/eval_tasks/{model}/{variant}/{lang}",
    threads: 1
    conda:
        "../envs/eval.yaml"
    script:
        "../scripts/evaluate.py"


rule scores:
    """Target: every score."""
    input:
        all_scores(),
