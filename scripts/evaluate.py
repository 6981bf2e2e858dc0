import logging
import sys

from okapi_pipeline.evaluate import evaluate_model

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
benchmarks = list(snakemake.params.benchmarks)
evaluate_model(
    model_dir=snakemake.input.model,
    benchmark_files=dict(zip(benchmarks, snakemake.input.benchmarks)),
    protocol=dict(snakemake.params.protocol),
    out_paths=dict(zip(benchmarks, snakemake.output)),
    workdir=snakemake.params.workdir,
    threads=snakemake.threads,
)
