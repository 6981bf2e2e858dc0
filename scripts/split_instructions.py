import logging
import sys
from pathlib import Path

from okapi_pipeline.data.split import split_instructions

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# The splits made here, in plan order; shard paths are results/data/en/{split}/shards/{shard}.jsonl.
splits = list(snakemake.params.plan)
shards = {split: [p for p in snakemake.output.shards if Path(p).parents[1].name == split] for split in splits}
split_instructions(
    sources=dict(snakemake.input.items()),
    plan=snakemake.params.plan,
    seed=snakemake.params.seed,
    items_per_shard=snakemake.params.items_per_shard,
    split_paths=dict(zip(splits, snakemake.output.splits)),
    shard_paths=shards,
)
