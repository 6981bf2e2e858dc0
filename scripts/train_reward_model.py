import logging
import sys

from okapi_pipeline.training.launch import run_stage
from okapi_pipeline.training.model_card import write_model_card

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.stdout = sys.stderr  # the trainer prints its progress
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# On several GPUs this relaunches itself through `accelerate launch`.
run_stage(
    "reward_model",
    dict(
        sft_dir=snakemake.input.sft,
        pairs_path=snakemake.input.pairs,
        out_dir=snakemake.output[0],
        # From the config, not a param: switching a logger on must not retrain the model.
        settings=dict(snakemake.params.settings, report_to=snakemake.config["training"]["report_to"]),
        checkpoint_dir=snakemake.params.checkpoints,
        threads=snakemake.threads,
    ),
)
write_model_card(snakemake.output[0], base_dir=snakemake.input.sft, **snakemake.params.card)
