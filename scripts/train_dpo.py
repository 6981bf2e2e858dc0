import logging
import sys

from okapi_pipeline.train import run_stage

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.stdout = sys.stderr  # the trainer prints its progress
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# On several GPUs this relaunches itself through `accelerate launch`.
run_stage(
    "dpo",
    dict(
        sft_dir=snakemake.input.sft,
        pairs_path=snakemake.input.pairs,
        out_dir=snakemake.output[0],
        settings=dict(snakemake.params.settings),
        checkpoint_dir=snakemake.params.checkpoints,
        threads=snakemake.threads,
    ),
)
