import logging
import sys

from okapi_pipeline.training.hub import fetch_base_model

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
fetch_base_model(
    hub_id=snakemake.params.source["hub_id"],
    revision=snakemake.params.source["revision"],
    out_dir=snakemake.output[0],
)
