import logging
import sys

from okapi_pipeline.report.figures import joint_figure

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
joint_figure(
    bench=snakemake.wildcards.bench,
    score_files=list(snakemake.input.scores),
    models=list(snakemake.params.models),
    variants=list(snakemake.params.variants),
    languages=list(snakemake.params.languages),
    metric=snakemake.params.metric,
    language_groups=dict(snakemake.params.language_groups),
    out_path=snakemake.output[0],
)
