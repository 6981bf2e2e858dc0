import logging
import sys

from okapi_pipeline.config import shard_count
from okapi_pipeline.data.split import split_instructions

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
# The splits made here, in plan order: output.splits has one file each, output.shards
# each split's shards in turn (rules/common.smk, english_shards_by_split).
splits = list(snakemake.params.plan)
shards, start = {}, 0
for split in splits:
    count = shard_count(snakemake.config, split)
    shards[split], start = snakemake.output.shards[start : start + count], start + count
split_instructions(
    sources=dict(snakemake.input.items()),
    plan=snakemake.params.plan,
    seed=snakemake.params.seed,
    items_per_shard=snakemake.params.items_per_shard,
    split_paths=dict(zip(splits, snakemake.output.splits)),
    shard_paths=shards,
)
