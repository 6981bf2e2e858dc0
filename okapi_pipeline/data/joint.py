"""Joint training (`training.scope: joint`): one model per base model on every language.

The joint data is every language's records in one shuffled file; a joint job has the
work of all the languages' models together, so PPO runs as many rounds as they do in
all, and the job spreads over several GPUs where its batch sizes allow.
"""

import logging
import random

from okapi_pipeline.jsonl import read_jsonl, write_jsonl

log = logging.getLogger(__name__)


def mix_languages(paths: dict, out_path, mix: str, seed: int) -> dict[str, int]:
    """Write the records of every language (`paths`: language -> JSONL) into one file,
    shuffled; return the records taken from each language.

    `as_is`: every record; `equal`: from each language a seeded sample as large as the
    smallest language's. Each record says its language, and its id is prefixed with it
    (the same English instruction has one id in every language: the reward model keeps
    a prompt's pairs together by id).
    """
    rng = random.Random(seed)
    records = {lang: read_jsonl(path) for lang, path in paths.items()}
    if mix == "equal":
        smallest = min(len(rows) for rows in records.values())
        records = {lang: rng.sample(rows, smallest) for lang, rows in records.items()}
    mixed = [
        {**row, "language": lang, **({"id": f"{lang}:{row['id']}"} if "id" in row else {})}
        for lang, rows in records.items()
        for row in rows
    ]
    rng.shuffle(mixed)
    write_jsonl(out_path, mixed)
    counts = {lang: len(rows) for lang, rows in records.items()}
    log.info("%d records (%s) -> %s", len(mixed), ", ".join(f"{k} {v}" for k, v in counts.items()), out_path)
    return counts


def joint_settings(stage: str, settings: dict, languages: int) -> dict:
    """A joint run's settings: the stage's, with PPO's rounds (when fixed) times the
    languages, so that it makes as many updates as the per-language runs together."""
    if stage == "ppo" and settings["rounds"]:
        return {**settings, "rounds": settings["rounds"] * languages}
    return settings
