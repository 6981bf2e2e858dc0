import logging
import sys

from okapi_pipeline.data.self_instruct import fetch_seed_tasks

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    fetch_seed_tasks(snakemake.params.url, snakemake.params.sha256, snakemake.output[0])
except ValueError as error:
    sys.exit(str(error))
