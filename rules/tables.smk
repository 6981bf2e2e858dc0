"""The paper's tables: one per benchmark, languages by resource group."""


rule paper_tables:
    """One benchmark's scores and the paper's reference numbers as CSV, Markdown, LaTeX and HTML."""
    input:
        scores=benchmark_scores,
        reference="reference/paper_scores.csv",
    output:
        csv=report(
            "results/tables/{bench}.csv",
            caption="../report/paper_tables.rst",
            category="Paper tables",
            labels={"benchmark": "{bench}", "format": "CSV"},
        ),
        markdown="results/tables/{bench}.md",
        latex="results/tables/{bench}.tex",
        html=report(
            "results/tables/{bench}.html",
            caption="../report/paper_tables.rst",
            category="Paper tables",
            labels={"benchmark": "{bench}", "format": "HTML"},
        ),
    log:
        "logs/tables/{bench}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        languages=LANGUAGES,
        models=MODELS,
        variants=VARIANTS,
        metric=evaluation_metric,
        split=evaluation_split,
        language_groups=config["language_groups"],
        released_models=released_model_references(),
    script:
        "../scripts/paper_tables.py"


rule tables:
    """Target: the paper's tables."""
    input:
        expand(
            "results/tables/{bench}.{ext}",
            bench=BENCHMARKS,
            ext=["csv", "md", "tex", "html"],
        ),
