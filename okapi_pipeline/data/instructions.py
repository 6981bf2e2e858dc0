"""English instructions in Alpaca format from a local file, a URL or the hub."""

import json
import logging
import urllib.request
from pathlib import Path

from okapi_pipeline.jsonl import write_jsonl

log = logging.getLogger(__name__)

HUB_PREFIX = "hub:"


def parse_records(text: str) -> list[dict]:
    """A JSON array or JSON Lines, whichever the text is."""
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_source(source: str) -> list[dict]:
    if source.startswith(HUB_PREFIX):
        from datasets import load_dataset

        return list(load_dataset(source[len(HUB_PREFIX) :], split="train"))
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=120) as response:
            return parse_records(response.read().decode("utf-8"))
    return parse_records(Path(source).read_text(encoding="utf-8"))


def normalise(records: list[dict], id_prefix: str = "alpaca") -> list[dict]:
    """`{id, instruction, input, output}`; a record's own id is kept, else a stable one by position."""
    normalised = []
    for index, record in enumerate(records):
        for key in ("instruction", "output"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"instruction record {index}: '{key}' is missing or empty")
        normalised.append(
            {
                "id": str(record["id"]) if record.get("id") not in (None, "") else f"{id_prefix}-{index:05d}",
                "instruction": record["instruction"].strip(),
                "input": (record.get("input") or "").strip(),
                "output": record["output"].strip(),
            }
        )
    ids = [record["id"] for record in normalised]
    if len(set(ids)) != len(ids):
        raise ValueError("instruction records: ids are not unique")
    return normalised


def load_instructions(source: str, limit: int | None, out_path) -> int:
    """Write the first `limit` (all when None) records of `source`, normalised; return the count."""
    records = read_source(source)
    if limit is not None:
        records = records[:limit]
    count = write_jsonl(out_path, normalise(records))
    log.info("%d instructions from %s", count, source)
    return count
