import logging
import sys

from okapi_pipeline.report.figures import paper_figures

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
paper_figures(
    bench=snakemake.wildcards.bench,
    score_files=list(snakemake.input.scores),
    models=list(snakemake.params.models),
    baseline=snakemake.params.baseline,
    variants=list(snakemake.params.variants),
    languages=list(snakemake.params.languages),
    metric=snakemake.params.metric,
    language_groups=dict(snakemake.params.language_groups),
    comparison_path=snakemake.output.comparison,
    gain_path=snakemake.output.gain,
)
