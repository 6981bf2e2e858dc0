import logging
import sys
from pathlib import Path

from okapi_pipeline.config import SPLITS
from okapi_pipeline.split import split_instructions

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# Shard paths are results/data/en/{split}/shards/{shard}.jsonl.
shards = {split: [p for p in snakemake.output.shards if Path(p).parents[1].name == split] for split in SPLITS}
split_instructions(
    sources={"alpaca": snakemake.input.alpaca, "self_instruct": snakemake.input.self_instruct},
    plan=snakemake.params.plan,
    seed=snakemake.params.seed,
    items_per_shard=snakemake.params.items_per_shard,
    split_paths=dict(zip(SPLITS, snakemake.output.splits)),
    shard_paths=shards,
)
