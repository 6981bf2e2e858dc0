"""The English instructions split by use (sft / rm / ppo) and cut into translation shards.

Each split names its sources and size. The original trains SFT on exactly the Alpaca
records and takes the reward-model and PPO prompts from the Self-Instruct generations
(Okapi README; scripts/supervised_finetuning.sh): `sft <- alpaca`, `rm, ppo <-
self_instruct`. Splits that name the same sources share one shuffled pool and never
share a record; listing both sources for every split pools them.
"""

import logging
import random

from okapi_pipeline.jsonl import read_jsonl, write_jsonl

log = logging.getLogger(__name__)

SOURCES = ("alpaca", "self_instruct")


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


def source_groups(plan: dict[str, dict]) -> dict[tuple[str, ...], list[str]]:
    """Splits grouped by their source set; two sets must be equal or disjoint."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, entry in plan.items():
        groups.setdefault(tuple(sorted(entry["sources"])), []).append(name)
    keys = list(groups)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if set(first) & set(second):
                raise ValueError(
                    f"split: {groups[first]} take {list(first)} and {groups[second]} take {list(second)}: "
                    "splits must name the same sources or disjoint ones"
                )
    return groups


def split_instructions(
    sources: dict[str, str],
    plan: dict[str, dict],
    seed: int,
    items_per_shard: int,
    split_paths: dict[str, str],
    shard_paths: dict[str, list[str]],
) -> dict[str, int]:
    """Write each split (`plan[name] = {sources, size}`) and its shards; return the sizes taken.

    `sources` maps a source name to its JSONL file. Within a group of splits that share
    their sources, the pool is shuffled with `seed` and cut in plan order; when it holds
    fewer records than the group wants, the group's sizes are scaled down proportionally.
    The number of shards per split is fixed by config (the DAG is static), so when a
    split is smaller than planned the trailing shards are empty files.
    """
    taken: dict[str, int] = {}
    for group_sources, names in source_groups(plan).items():
        pool = [record for source in group_sources for record in read_jsonl(sources[source])]
        random.Random(seed).shuffle(pool)
        wanted = {name: plan[name]["size"] for name in names}
        sizes = scaled_sizes(wanted, len(pool))
        if sizes != wanted:
            log.warning(
                "only %d records from %s for %d planned: %s scaled down to %s",
                len(pool),
                "+".join(group_sources),
                sum(wanted.values()),
                names,
                sizes,
            )
        start = 0
        for name in names:
            records = pool[start : start + sizes[name]]
            start += sizes[name]
            _write_split(name, records, items_per_shard, split_paths[name], shard_paths[name])
            log.info("split %s: %d records from %s", name, len(records), "+".join(group_sources))
        taken.update(sizes)
    return {name: taken[name] for name in plan}


def _write_split(name: str, records: list[dict], items_per_shard: int, path, shards: list) -> None:
    if len(records) > len(shards) * items_per_shard:
        raise ValueError(f"split {name}: {len(records)} records do not fit {len(shards)} shards of {items_per_shard}")
    write_jsonl(path, records)
    for index, shard in enumerate(shards):
        write_jsonl(shard, records[index * items_per_shard : (index + 1) * items_per_shard])
