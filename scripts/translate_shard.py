import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.cost import BudgetExceeded, check_budget
from okapi_pipeline.llm import TooManyRejects
from okapi_pipeline.mt import UnsupportedLanguage
from okapi_pipeline.translate import translate_shard

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = stage_llm_settings(snakemake.config, "translation", snakemake.params.llm)
try:
    # Before any request: a paid stage over its budget refuses to start.
    check_budget(snakemake.config, "translation", settings, snakemake.input.instructions)
    translate_shard(
        source=snakemake.input.shard,
        translated_path=snakemake.output.translated,
        rejects_path=snakemake.output.rejects,
        report_path=snakemake.output.report,
        language=snakemake.wildcards.lang,
        prompt_file=snakemake.input.prompt,
        llm_settings=settings,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
    )
except (BudgetExceeded, TooManyRejects, UnsupportedLanguage) as error:
    # One line at the end of the log; the cache keeps every answer.
    sys.exit(str(error))
