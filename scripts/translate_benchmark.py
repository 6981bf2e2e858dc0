import logging
import sys

from okapi_pipeline.benchmarks import translate_benchmark
from okapi_pipeline.config import stage_llm_settings
from okapi_pipeline.cost import BudgetExceeded
from okapi_pipeline.llm import TooManyRejects
from okapi_pipeline.mt import UnsupportedLanguage

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
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
except (BudgetExceeded, TooManyRejects, UnsupportedLanguage) as error:
    # One line at the end of the log; the cache keeps every answer.
    sys.exit(str(error))
