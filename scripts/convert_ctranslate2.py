import logging
import sys

from okapi_pipeline.llm.mt import convert_ctranslate2

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
convert_ctranslate2(model_dir=snakemake.input[0], out_dir=snakemake.output[0])
