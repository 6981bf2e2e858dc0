import logging
import sys

from okapi_pipeline.data.generation import generate_responses

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
generate_responses(
    model_dir=snakemake.input.model,
    prompts_path=snakemake.input.prompts,
    out_path=snakemake.output[0],
    settings=snakemake.params.settings,
    progress_path=snakemake.params.progress,
    threads=snakemake.threads,
)
