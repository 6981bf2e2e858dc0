import logging
import sys

from okapi_pipeline.data.ranking import preference_pairs

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
preference_pairs(ranked_paths=list(snakemake.input), out_path=snakemake.output[0])
