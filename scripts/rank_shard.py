import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.data.ranking import rank_shard
from okapi_pipeline.languages import SOURCE_LANGUAGE
from okapi_pipeline.llm import BudgetCheck, exit_on_user_error

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# Without a back_translation stage of its own, the judge's translator back-translates here
# (English responses are ranked as they are).
separate = snakemake.input.back_translated or snakemake.wildcards.lang == SOURCE_LANGUAGE
stages = ("ranking",) if separate else ("ranking", "back_translation")
with exit_on_user_error():
    rank_shard(
        responses_path=snakemake.input.responses,
        ranked_path=snakemake.output.ranked,
        rejects_path=snakemake.output.rejects,
        report_path=snakemake.output.report,
        language=snakemake.wildcards.lang,
        rank_prompt_file=snakemake.input.prompt,
        back_translation_prompt_file=snakemake.input.back_translation_prompt,
        llm_settings=stage_llm_settings(snakemake.config, "ranking", snakemake.params.llm),
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        back_translated_path=snakemake.input.back_translated or None,
        budget=BudgetCheck(snakemake.input.token_counts, stages),
    )
