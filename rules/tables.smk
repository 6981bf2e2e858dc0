"""The paper's tables: one per benchmark, languages by resource group."""


rule paper_tables:
    """Scores and the paper's reference numbers into CSV, Markdown, LaTeX and HTML tables."""
    input:
        scores=all_scores(),
        reference="reference/paper_scores.csv",
    output:
        csv=report(
            expand("results/tables/{bench}.csv", bench=BENCHMARKS),
            caption="../report/paper_tables.rst",
            category="Paper tables",
        ),
        markdown=expand("results/tables/{bench}.md", bench=BENCHMARKS),
        latex=expand("results/tables/{bench}.tex", bench=BENCHMARKS),
        html=report(
            expand("results/tables/{bench}.html", bench=BENCHMARKS),
            caption="../report/paper_tables.rst",
            category="Paper tables",
        ),
    log:
        "logs/tables/paper_tables.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        languages=LANGUAGES,
        models=MODELS,
        variants=VARIANTS,
        benchmarks=list(BENCHMARKS),
        metrics={bench: config["evaluation"][bench]["metric"] for bench in BENCHMARKS},
        splits={bench: config["evaluation"][bench]["split"] for bench in BENCHMARKS},
        language_groups=config["language_groups"],
        checkpoints=checkpoint_references(),
    script:
        "../scripts/paper_tables.py"


rule tables:
    """Target: the paper's tables."""
    input:
        rules.paper_tables.output,
