import logging
import sys

from okapi_pipeline.report.cost import price_estimate

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
price_estimate(snakemake.input[0], snakemake.params.llm, snakemake.output[0])
