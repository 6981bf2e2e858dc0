import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.cost import BudgetExceeded, check_budget
from okapi_pipeline.self_instruct import self_instruct

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = stage_llm_settings(snakemake.config, "self_instruct", snakemake.params.llm)
try:
    # Before any request: a paid stage over its budget refuses to start.
    check_budget(snakemake.config, "self_instruct", settings, None)
    self_instruct(
        seed_tasks=snakemake.input.seed_tasks,
        prompt_file=snakemake.input.prompt,
        llm_settings=settings,
        target_count=snakemake.params.target_count,
        max_attempts=snakemake.params.max_attempts,
        tasks_per_request=snakemake.params.tasks_per_request,
        rouge_l_threshold=snakemake.params.rouge_l_threshold,
        seed=snakemake.params.seed,
        out_path=snakemake.output.instructions,
        report_path=snakemake.output.report,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
    )
except BudgetExceeded as error:
    sys.exit(str(error))
