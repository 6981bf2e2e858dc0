import logging
import sys

from okapi_pipeline.cost import BudgetExceeded
from okapi_pipeline.llm import TooManyRejects
from okapi_pipeline.ranking import rank_shard

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
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
        llm_settings=snakemake.params.llm,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        cost_estimate=snakemake.input.cost or None,
    )
except (BudgetExceeded, TooManyRejects) as error:
    # One line at the end of the log; the cache keeps every answer.
    sys.exit(str(error))
