import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.data.ranking import back_translate_shard
from okapi_pipeline.llm import BudgetCheck, exit_on_user_error

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
with exit_on_user_error():
    back_translate_shard(
        responses_path=snakemake.input.responses,
        out_path=snakemake.output[0],
        language=snakemake.wildcards.lang,
        back_translation_prompt_file=snakemake.input.prompt,
        llm_settings=stage_llm_settings(snakemake.config, "back_translation", snakemake.params.llm),
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        budget=BudgetCheck(snakemake.input.token_counts, ("back_translation",)),
    )
