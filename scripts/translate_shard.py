import logging
import sys

from okapi_pipeline.cost import BudgetExceeded
from okapi_pipeline.llm import TooManyRejects
from okapi_pipeline.translate import translate_shard

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    translate_shard(
        source=snakemake.input.shard,
        translated_path=snakemake.output.translated,
        rejects_path=snakemake.output.rejects,
        report_path=snakemake.output.report,
        language=snakemake.wildcards.lang,
        prompt_file=snakemake.input.prompt,
        llm_settings=snakemake.params.llm,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        cost_estimate=snakemake.input.cost or None,
    )
except (BudgetExceeded, TooManyRejects) as error:
    # One line at the end of the log; the cache keeps every answer.
    sys.exit(str(error))
