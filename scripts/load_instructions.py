import logging
import sys

from okapi_pipeline.data.instructions import load_instructions

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
load_instructions(
    source=snakemake.params.source,
    limit=snakemake.params.limit,
    out_path=snakemake.output[0],
)
