import logging
import sys

from okapi_pipeline.cost import BudgetExceeded
from okapi_pipeline.self_instruct import self_instruct

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    self_instruct(
        seed_tasks=snakemake.input.seed_tasks,
        prompt_file=snakemake.input.prompt,
        llm_settings=snakemake.params.llm,
        target_count=snakemake.params.target_count,
        max_attempts=snakemake.params.max_attempts,
        rouge_l_threshold=snakemake.params.rouge_l_threshold,
        seed=snakemake.params.seed,
        out_path=snakemake.output.instructions,
        report_path=snakemake.output.report,
        cache_name=snakemake.params.cache_name,
        threads=snakemake.threads,
        cost_estimate=snakemake.input.cost or None,
    )
except BudgetExceeded as error:
    sys.exit(str(error))
