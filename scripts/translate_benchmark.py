import logging
import sys

from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.evaluation.benchmarks import translate_benchmark
from okapi_pipeline.llm import exit_on_user_error

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
with exit_on_user_error():
    translate_benchmark(
        bench=snakemake.wildcards.bench,
        lang=snakemake.wildcards.lang,
        source=dict(snakemake.params.source),
        splits=list(snakemake.params.splits),
        prompt_file=snakemake.input.prompt,
        llm_settings=stage_llm_settings(snakemake.config, "benchmarks", snakemake.params.llm),
        out_path=snakemake.output.data,
        qa_path=snakemake.output.qa,
        threads=snakemake.threads,
    )
