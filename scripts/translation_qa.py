import logging
import sys

from okapi_pipeline.data.translate import translation_qa

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
translation_qa(
    english_paths=snakemake.input.english,
    translated_paths=snakemake.input.translated,
    report_paths=snakemake.input.reports,
    out_path=snakemake.output[0],
    language=snakemake.wildcards.lang,
)
