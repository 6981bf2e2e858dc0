"""Translated benchmarks in the released Okapi formats, checked on load."""


rule benchmark_data:
    """One benchmark in one language: the needed splits, validated and normalised."""
    input:
        benchmark_source_files,
    output:
        "results/benchmark_data/{bench}/{lang}.json",
    log:
        "logs/benchmarks/{bench}/{lang}.log",
    localrule: True
    conda:
        "../envs/eval.yaml"
    params:
        source=benchmark_source,
        splits=benchmark_splits,
    script:
        "../scripts/benchmark_data.py"
