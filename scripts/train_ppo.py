import logging
import sys

from okapi_pipeline.ppo import train_ppo

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.stdout = sys.stderr  # the trainer prints its progress
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
train_ppo(
    sft_dir=snakemake.input.sft,
    reward_model_dir=snakemake.input.reward_model,
    prompts_path=snakemake.input.prompts,
    out_dir=snakemake.output[0],
    settings=dict(snakemake.params.settings),
    checkpoint_dir=snakemake.params.checkpoints,
    threads=snakemake.threads,
)
