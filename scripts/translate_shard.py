import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.data.translate import translate_shard
from okapi_pipeline.llm import BudgetCheck, exit_on_user_error

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
with exit_on_user_error():
    translate_shard(
        source=snakemake.input.shard,
        translated_path=snakemake.output.translated,
        rejects_path=snakemake.output.rejects,
        report_path=snakemake.output.report,
        language=snakemake.wildcards.lang,
        prompt_file=snakemake.input.prompt,
        llm_settings=stage_llm_settings(snakemake.config, "translation", snakemake.params.llm),
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        # Before any request: a paid stage over its budget refuses to start.
        budget=BudgetCheck(snakemake.input.token_counts, ("translation",)),
    )
