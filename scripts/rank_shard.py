import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.cost import BudgetExceeded, check_budget
from okapi_pipeline.llm import TooManyRejects
from okapi_pipeline.ranking import rank_shard

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = stage_llm_settings(snakemake.config, "ranking", snakemake.params.llm)
try:
    # Before any request: a paid stage over its budget refuses to start.
    check_budget(snakemake.config, "ranking", settings, snakemake.input.instructions)
    if not snakemake.input.back_translated:
        # Back-translated here, by the judge's translator.
        check_budget(snakemake.config, "back_translation", settings, snakemake.input.instructions)
    rank_shard(
        responses_path=snakemake.input.responses,
        shard_index=snakemake.params.shard_index,
        items_per_shard=snakemake.params.items_per_shard,
        ranked_path=snakemake.output.ranked,
        rejects_path=snakemake.output.rejects,
        report_path=snakemake.output.report,
        language=snakemake.wildcards.lang,
        rank_prompt_file=snakemake.input.prompt,
        back_translation_prompt_file=snakemake.input.back_translation_prompt,
        llm_settings=settings,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        back_translated_path=snakemake.input.back_translated or None,
    )
except (BudgetExceeded, TooManyRejects) as error:
    # One line at the end of the log; the cache keeps every answer.
    sys.exit(str(error))
