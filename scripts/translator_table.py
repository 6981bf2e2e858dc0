import logging
import sys

from okapi_pipeline.report.translators import comparison_table

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
comparison_table(
    row_paths=list(snakemake.input),
    csv_path=snakemake.output.csv,
    markdown_path=snakemake.output.markdown,
    figure_path=snakemake.output.figure,
)
