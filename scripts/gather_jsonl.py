import logging
import sys

from okapi_pipeline.data.translate import gather

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
gather(inputs=list(snakemake.input), output=snakemake.output[0])
