import logging
import sys

from okapi_pipeline.evaluation.evaluate import evaluate_model

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
benchmarks = snakemake.params.benchmarks
evaluate_model(
    model_dir=snakemake.input.model,
    benchmark_files={bench: snakemake.input[bench] for bench in benchmarks},
    protocol=dict(snakemake.params.protocol),
    out_paths={bench: snakemake.output[bench] for bench in benchmarks},
    workdir=snakemake.params.workdir,
    threads=snakemake.threads,
    model=snakemake.wildcards.model,
    variant=snakemake.wildcards.variant,
)
