import logging
import sys

from okapi_pipeline.data.joint import mix_languages

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
mix_languages(
    paths=dict(snakemake.input.items()),
    out_path=snakemake.output[0],
    mix=snakemake.params.mix,
    seed=snakemake.params.seed,
)
