import logging
import sys

from okapi_pipeline.tables import paper_tables

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
paper_tables(
    score_files=list(snakemake.input.scores),
    reference_file=snakemake.input.reference,
    languages=list(snakemake.params.languages),
    models=list(snakemake.params.models),
    variants=list(snakemake.params.variants),
    benchmarks=list(snakemake.params.benchmarks),
    metrics=dict(snakemake.params.metrics),
    splits=dict(snakemake.params.splits),
    language_groups=dict(snakemake.params.language_groups),
    csv_paths=list(snakemake.output.csv),
    markdown_paths=list(snakemake.output.markdown),
    latex_paths=list(snakemake.output.latex),
    html_paths=list(snakemake.output.html),
    checkpoints=dict(snakemake.params.checkpoints),
)
