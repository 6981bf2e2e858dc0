import logging
import sys

from okapi_pipeline.tiny.tokenizers import train_tokenizer

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
train_tokenizer(
    corpus_dir=snakemake.input.corpus,
    out_dir=snakemake.output[0],
    vocab_size=snakemake.params.vocab_size,
)
