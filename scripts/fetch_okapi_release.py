import logging
import sys

from okapi_pipeline.data.okapi_release import fetch_release_file

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
release = snakemake.params.release
try:
    fetch_release_file(release["source"], snakemake.output[0], release["sha256"], release["size"])
except OSError as error:  # unreachable host, HTTP error, missing local file
    sys.exit(f"{release['source']}: {error}")
except ValueError as error:  # not the released file
    sys.exit(str(error))
