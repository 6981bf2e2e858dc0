import logging
import sys

from okapi_pipeline.evaluation.benchmarks import BenchmarkFormatError, prepare_benchmark

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    prepare_benchmark(
        bench=snakemake.wildcards.bench,
        lang=snakemake.wildcards.lang,
        source=dict(snakemake.params.source),
        splits=list(snakemake.params.splits),
        out_path=snakemake.output[0],
        strict=snakemake.params.strict,
    )
except (BenchmarkFormatError, FileNotFoundError) as error:
    sys.exit(str(error))
