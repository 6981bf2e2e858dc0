import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.evaluation.benchmarks import translate_benchmark
from okapi_pipeline.llm import exit_on_user_error
from okapi_pipeline.llm.job import BudgetCheck

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = stage_llm_settings(snakemake.config, "benchmarks", snakemake.params.llm)
with exit_on_user_error():
    translate_benchmark(
        bench=snakemake.wildcards.bench,
        lang=snakemake.wildcards.lang,
        source=dict(snakemake.params.source),
        splits=list(snakemake.params.splits),
        prompt_file=snakemake.input.prompt,
        llm_settings=settings,
        out_path=snakemake.output.data,
        qa_path=snakemake.output.qa,
        threads=snakemake.threads,
        # Before any request: a paid translation over its budget refuses to start.
        budget=BudgetCheck(snakemake.input.token_counts, ("benchmarks",)),
    )
