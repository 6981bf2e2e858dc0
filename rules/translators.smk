"""Choosing a translator: one English sample through every translator, measured."""


rule translator_sample_api:
    """One API translator on the sample of one language: there and back, QA, chrF, time, cost."""
    input:
        unpack(translator_sample_inputs),
    output:
        "results/translators/{translator}/{lang}.json",
    log:
        "logs/translators/{translator}/{lang}.log",
    benchmark:
        "logs/timing/translators/{translator}/{lang}.tsv"
    wildcard_constraints:
        translator=alternation(REMOTE_TRANSLATORS),
    localrule: API_JOBS_ON_LOGIN_NODE
    conda:
        "../envs/data.yaml"
    resources:
        **api_job_resources(),
    params:
        llm=translator_answer_params,
        comparison=config["translator_comparison"],
    script:
        "../scripts/compare_translator.py"


rule translator_sample_local:
    """One local translator (hf or mt) on the sample of one language, on a GPU node."""
    input:
        unpack(translator_sample_inputs),
    output:
        "results/translators/{translator}/{lang}.json",
    log:
        "logs/translators/{translator}/{lang}.log",
    benchmark:
        "logs/timing/translators/{translator}/{lang}.tsv"
    wildcard_constraints:
        translator=alternation(LOCAL_TRANSLATORS),
    conda:
        "../envs/data.yaml"
    resources:
        **gpu_resources("translator_sample", translator_model),
    params:
        llm=translator_answer_params,
        comparison=config["translator_comparison"],
    script:
        "../scripts/compare_translator.py"


rule translator_comparison:
    """Target: the comparison of translators as a table (one row per language and translator) and a figure."""
    input:
        translator_samples(),
    output:
        csv=report(
            "results/tables/translators.csv",
            caption="../report/translators.rst",
            category="Choosing a translator",
        ),
        markdown="results/tables/translators.md",
        figure=report(
            "results/figures/translators.png",
            caption="../report/translators.rst",
            category="Choosing a translator",
        ),
    log:
        "logs/translators/comparison.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/translator_table.py"
