"""The English pool split by use (sft / rm / ppo) and cut into translation shards."""

import logging
import random

from okapi_pipeline.jsonl import read_jsonl, write_jsonl

log = logging.getLogger(__name__)


def scaled_sizes(sizes: dict[str, int], available: int) -> dict[str, int]:
    """The configured sizes, or proportionally smaller ones that add up to `available`."""
    wanted = sum(sizes.values())
    if available >= wanted:
        return dict(sizes)
    exact = {name: size * available / wanted for name, size in sizes.items()}
    scaled = {name: int(value) for name, value in exact.items()}
    # Largest remainders get the records left over by rounding down.
    leftover = available - sum(scaled.values())
    for name in sorted(exact, key=lambda n: scaled[n] - exact[n])[:leftover]:
        scaled[name] += 1
    return scaled


def split_instructions(inputs, sizes: dict[str, int], seed: int, items_per_shard: int,
                       split_paths: dict[str, str], shard_paths: dict[str, list[str]]) -> dict[str, int]:
    """Shuffle the pooled inputs with `seed`, take each split's size, write splits and shards.

    The number of shards per split is fixed by config (the DAG is static), so when the
    split is smaller than planned the trailing shards are empty files.
    """
    pool = [record for path in inputs for record in read_jsonl(path)]
    random.Random(seed).shuffle(pool)
    taken = scaled_sizes(sizes, len(pool))
    if taken != dict(sizes):
        log.warning("only %d instructions for %d planned: split sizes scaled down to %s",
                    len(pool), sum(sizes.values()), taken)
    start = 0
    for name, size in taken.items():
        records = pool[start:start + size]
        start += size
        write_jsonl(split_paths[name], records)
        shards = shard_paths[name]
        if len(records) > len(shards) * items_per_shard:
            raise ValueError(f"split {name}: {len(records)} records do not fit {len(shards)} shards "
                             f"of {items_per_shard}")
        for index, path in enumerate(shards):
            write_jsonl(path, records[index * items_per_shard:(index + 1) * items_per_shard])
        log.info("split %s: %d records in %d shards", name, len(records), len(shards))
    return taken
