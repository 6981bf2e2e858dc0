import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.data.self_instruct import self_instruct
from okapi_pipeline.llm import BudgetCheck, exit_on_user_error

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
with exit_on_user_error():
    self_instruct(
        seed_tasks=snakemake.input.seed_tasks,
        prompt_file=snakemake.input.prompt,
        llm_settings=stage_llm_settings(snakemake.config, "self_instruct", snakemake.params.llm),
        target_count=snakemake.params.target_count,
        max_attempts=snakemake.params.max_attempts,
        tasks_per_request=snakemake.params.tasks_per_request,
        rouge_l_threshold=snakemake.params.rouge_l_threshold,
        seed=snakemake.params.seed,
        out_path=snakemake.output.instructions,
        report_path=snakemake.output.report,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        budget=BudgetCheck(snakemake.input.token_counts, ("self_instruct",)),
    )
