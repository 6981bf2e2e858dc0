import logging
import sys

from okapi_pipeline.report.tables import paper_table

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
paper_table(
    bench=snakemake.wildcards.bench,
    score_files=list(snakemake.input.scores),
    reference_file=snakemake.input.reference,
    languages=list(snakemake.params.languages),
    models=list(snakemake.params.models),
    variants=list(snakemake.params.variants),
    metric=snakemake.params.metric,
    split=snakemake.params.split,
    language_groups=dict(snakemake.params.language_groups),
    csv_path=snakemake.output.csv,
    markdown_path=snakemake.output.markdown,
    latex_path=snakemake.output.latex,
    html_path=snakemake.output.html,
    released_models=dict(snakemake.params.released_models),
)
