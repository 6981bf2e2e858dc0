import logging
import sys

from okapi_pipeline.data.translate import translation_qa

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# The English and translated files come in split order.
splits = snakemake.params.splits
translation_qa(
    english_paths=dict(zip(splits, snakemake.input.english)),
    translated_paths=dict(zip(splits, snakemake.input.translated)),
    report_paths=snakemake.params.reports,
    out_path=snakemake.output[0],
    language=snakemake.wildcards.lang,
)
