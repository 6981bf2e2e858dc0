import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.cost import BudgetExceeded, check_budget
from okapi_pipeline.mt import UnsupportedLanguage
from okapi_pipeline.ranking import back_translate_shard

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = stage_llm_settings(snakemake.config, "back_translation", snakemake.params.llm)
try:
    # Before any request: a paid stage over its budget refuses to start.
    check_budget(snakemake.config, "back_translation", settings, snakemake.input.instructions)
    back_translate_shard(
        responses_path=snakemake.input.responses,
        shard_index=snakemake.params.shard_index,
        items_per_shard=snakemake.params.items_per_shard,
        out_path=snakemake.output[0],
        language=snakemake.wildcards.lang,
        back_translation_prompt_file=snakemake.input.prompt,
        llm_settings=settings,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
    )
except (BudgetExceeded, UnsupportedLanguage) as error:
    # One line at the end of the log.
    sys.exit(str(error))
