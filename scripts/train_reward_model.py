import logging
import sys

from okapi_pipeline.reward_model import train_reward_model

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.stdout = sys.stderr  # the trainer prints its progress
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
train_reward_model(
    sft_dir=snakemake.input.sft,
    pairs_path=snakemake.input.pairs,
    out_dir=snakemake.output[0],
    settings=dict(snakemake.params.settings),
    checkpoint_dir=snakemake.params.checkpoints,
    threads=snakemake.threads,
)
