"""Translated benchmarks in the released Okapi formats, checked on load."""


rule benchmark_data:
    """One benchmark in one language: the needed splits, validated and normalised."""
    input:
        released_benchmark_files,
    output:
        "results/benchmark_data/{bench}/{lang}.json",
    log:
        "logs/benchmarks/{bench}/{lang}.log",
    wildcard_constraints:
        bench=alternation(RELEASED_BENCHMARKS),
    localrule: True
    conda:
        "../envs/eval.yaml"
    params:
        source=benchmark_source,
        splits=benchmark_splits,
        strict=config["benchmarks"]["strict"],
    script:
        "../scripts/benchmark_data.py"


rule english_benchmark_data:
    """A translated benchmark in English (the control language): the English files it is
    translated from, checked as a released benchmark is."""
    input:
        released_benchmark_files,
    output:
        "results/benchmark_data/{bench}/{lang}.json",
    log:
        "logs/benchmarks/{bench}/{lang}.log",
    wildcard_constraints:
        bench=alternation(TRANSLATED_BENCHMARKS),
        lang=SOURCE_LANGUAGE,
    localrule: True
    conda:
        "../envs/eval.yaml"
    params:
        source=benchmark_source,
        splits=benchmark_splits,
        strict=config["benchmarks"]["strict"],
    script:
        "../scripts/benchmark_data.py"


rule translate_benchmark:
    """The English benchmark translated through the LLM layer, for languages with no released files."""
    input:
        unpack(benchmark_translation_inputs),
    output:
        data="results/benchmark_data/{bench}/{lang}.json",
        qa=report(
            "results/qa/benchmarks/{bench}/{lang}.json",
            caption="../report/benchmark_translation_qa.rst",
            category="Translation QA",
            subcategory="Benchmarks",
        ),
    log:
        "logs/benchmarks/{bench}/{lang}.log",
    benchmark:
        "logs/timing/translate_benchmark/{bench}/{lang}.tsv"
    wildcard_constraints:
        bench=alternation(TRANSLATED_BENCHMARKS),
        lang=alternation(TRANSLATION_TARGETS),
    localrule: llm_on_login_node("benchmarks")
    conda:
        "../envs/data.yaml"
    resources:
        **llm_job_resources("translate_benchmark", "benchmarks"),
    params:
        source=benchmark_source,
        splits=benchmark_splits,
        llm=llm_answer_params("benchmarks"),
    script:
        "../scripts/translate_benchmark.py"
