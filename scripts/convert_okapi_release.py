import logging
import sys

from okapi_pipeline.data.okapi_release import ReleaseError, convert_release_file

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    convert_release_file(snakemake.params.split, snakemake.input[0], snakemake.output[0], snakemake.wildcards.lang)
except ReleaseError as error:
    sys.exit(str(error))
