import logging
import sys

from okapi_pipeline.tiny.models import build_tiny_model

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
build_tiny_model(
    tokenizer_dir=snakemake.input.get("tokenizer"),
    corpus_dir=snakemake.input.corpus,
    out_dir=snakemake.output[0],
    build=dict(snakemake.params.build),
    pretraining=dict(snakemake.params.pretraining),
    threads=snakemake.threads,
)
