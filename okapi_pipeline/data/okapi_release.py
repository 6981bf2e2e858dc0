"""The released Okapi data as the source of a split: fetched, checked, converted.

nlp-uoregon/Okapi released the data its models were trained on, one JSON file per
language and set, as git-LFS objects (datasets/{set}/{lang}.json). A split whose
`source` is `okapi_release` takes them instead of translating (and, for rm, ranking):
`fetch_release_file` copies a file from the LFS host or a local folder and keeps it
only if its size and SHA-256 are those of its pointer file (reference/okapi_release.csv,
rebuilt by tools/okapi_release_table.py); the converters turn the records into the
pipeline's SFT records, PPO prompts and preference pairs. The record formats are those
the original loaders read (reference/README.md has the evidence):

- multilingual-alpaca-52k: {instruction, input, output} (supervised_finetuning.py:77-87)
- multilingual-ranking-data-42k: one record per pair, {instruction, input,
  prefered_output, rejected_output} (sic; reward_modeling.py:84-105): the file holds
  the pairs themselves, so each record is one pair, kept as released
- multilingual-rl-tuning-64k: {instruction, input, output}, only the prompt used; values
  that are not text (numbers) read as text (rl_training.py:150-176)
"""

import csv
import hashlib
import json
import logging
import os
import urllib.request
from pathlib import Path

from okapi_pipeline.jsonl import write_jsonl

log = logging.getLogger(__name__)

# The released set each split can come from.
DATASETS = {
    "sft": "multilingual-alpaca-52k",
    "rm": "multilingual-ranking-data-42k",
    "ppo": "multilingual-rl-tuning-64k",
}
# The release names its Japanese file jp.json; every other file is {ISO 639-1 code}.json.
FILE_STEMS = {"ja": "jp"}
CHUNK_BYTES = 1 << 20
LFS_POINTER = b"version https://git-lfs"


class ReleaseError(ValueError):
    """A released file that is not the expected one, or a record that does not parse (one line)."""


# ---- the checksum table -------------------------------------------------------------------


def release_file(lang: str) -> str:
    return f"{FILE_STEMS.get(lang, lang)}.json"


def read_checksums(path) -> dict[tuple[str, str], dict]:
    """(dataset, file) -> {"sha256", "size"} from a table with those columns."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {
            (row["dataset"], row["file"]): {"sha256": row["sha256"], "size": int(row["size"])}
            for row in csv.DictReader(handle)
        }


def expected_file(checksums: dict, split: str, lang: str) -> dict:
    """What the release holds for one split and language: {dataset, file, sha256, size}."""
    dataset, file = DATASETS[split], release_file(lang)
    if (dataset, file) not in checksums:
        raise ReleaseError(f"the Okapi release has no {dataset}/{file}")
    return {"dataset": dataset, "file": file, **checksums[(dataset, file)]}


def missing_languages(checksums: dict, split: str, languages) -> list[str]:
    """The languages the split's released set does not cover."""
    return [lang for lang in languages if (DATASETS[split], release_file(lang)) not in checksums]


# ---- fetching -------------------------------------------------------------------------------


def _open(source: str):
    if source.startswith(("http://", "https://")):
        return urllib.request.urlopen(source, timeout=300)
    return open(source, "rb")


def fetch_release_file(source: str, out_path, sha256: str, size: int) -> None:
    """Copy `source` (an http(s) URL or a local file) to `out_path` if it has exactly
    `size` bytes and the SHA-256 `sha256`; otherwise write nothing and raise ReleaseError.

    The bytes go to a temporary file beside `out_path`, renamed into place only once both
    checks pass, so no partial or wrong file is ever left under the output's name.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    digest, received, head = hashlib.sha256(), 0, b""
    try:
        with _open(source) as stream, open(partial, "wb") as handle:
            while chunk := stream.read(CHUNK_BYTES):
                head = head or chunk[: len(LFS_POINTER)]
                received += len(chunk)
                if received > size:
                    raise ReleaseError(f"{source}: more than the expected {size:,} bytes: not the released file")
                digest.update(chunk)
                handle.write(chunk)
        if received != size:
            pointer = " (a git-LFS pointer: the host did not serve the object)" if head == LFS_POINTER else ""
            raise ReleaseError(f"{source}: {received:,} bytes, not the expected {size:,}{pointer}")
        if digest.hexdigest() != sha256:
            raise ReleaseError(f"{source}: SHA-256 {digest.hexdigest()}, not the expected {sha256}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out_path)
    log.info("%s: %s bytes, SHA-256 checked -> %s", source, f"{size:,}", out_path)


# ---- reading and converting -------------------------------------------------------------------


def read_release_records(path) -> list:
    """The records of a released file: a JSON array, or JSON Lines, as `datasets`' json loader reads both."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ReleaseError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}")
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ReleaseError(f"{path}: record {len(records)} (line {lineno}) is not valid JSON: {error.msg}")
    return records


def _text(record, key: str, where: str, required: bool = True) -> str:
    """A field as text: numbers read as text (the original PPO loader did the same); an
    absent or null optional field is empty; anything else stops with where it is."""
    if not isinstance(record, dict):
        raise ReleaseError(f"{where} is a JSON {type(record).__name__}, not an object")
    value = record.get(key)
    if value is None:
        if required:
            raise ReleaseError(f"{where}: '{key}' is missing")
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise ReleaseError(f"{where}: '{key}' is a JSON {type(value).__name__}, not text")
    return value


def _prompt(record, where: str) -> dict:
    instruction = _text(record, "instruction", where)
    if not instruction.strip():
        raise ReleaseError(f"{where}: 'instruction' is empty")
    return {"instruction": instruction, "input": _text(record, "input", where, required=False)}


def sft_records(records: list, path, lang: str) -> list[dict]:
    """Alpaca-format SFT records, {id, instruction, input, output}."""
    return [
        {"id": f"okapi-{lang}-{index:06d}", **_prompt(r, w), "output": _text(r, "output", w)}
        for index, r, w in _located(records, path)
    ]


def ppo_prompts(records: list, path, lang: str) -> list[dict]:
    """PPO prompts, {id, instruction, input} (the released output is not used)."""
    return [{"id": f"okapi-{lang}-{index:06d}", **_prompt(r, w)} for index, r, w in _located(records, path)]


def preference_pairs(records: list, path, lang: str) -> list[dict]:
    """Pairs in the released keys, {id, instruction, input, prefered_output, rejected_output},
    one per record as released. The pairs of one prompt (instruction and input) share the
    id of its first record, so the reward model holds out whole prompts."""
    pairs, prompt_ids = [], {}
    for index, record, where in _located(records, path):
        prompt = _prompt(record, where)
        prompt_id = prompt_ids.setdefault((prompt["instruction"], prompt["input"]), f"okapi-{lang}-{index:06d}")
        pairs.append(
            {
                "id": prompt_id,
                **prompt,
                "prefered_output": _text(record, "prefered_output", where),
                "rejected_output": _text(record, "rejected_output", where),
            }
        )
    return pairs


def _located(records: list, path):
    for index, record in enumerate(records):
        yield index, record, f"{path}: record {index}"


CONVERTERS = {"sft": sft_records, "rm": preference_pairs, "ppo": ppo_prompts}


def convert_release_file(split: str, path, out_path, lang: str) -> int:
    """Convert one released file into the split's JSONL (SFT records, pairs or PPO
    prompts); return the count. A record that does not parse stops with its file and index."""
    records = read_release_records(path)
    if not isinstance(records, list):
        raise ReleaseError(f"{path}: a JSON {type(records).__name__}, not a list of records")
    if not records:
        raise ReleaseError(f"{path}: no records")
    count = write_jsonl(out_path, CONVERTERS[split](records, path, lang))
    log.info("%s: %d %s records -> %s", path, count, split, out_path)
    return count
