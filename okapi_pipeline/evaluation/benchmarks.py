"""The translated benchmarks (ARC, HellaSwag, MMLU) in the released Okapi formats.

The released files are JSON arrays, one file per language and split:
`m_arc/{lang}_{train,validation,test}.json`, `m_hellaswag/{lang}_validation.json`,
`m_mmlu/{lang}_{dev,val,test}.json`. The same records are mirrored on the Hugging
Face hub (`alexandrainst/m_arc` etc., one config per language). Every record is
checked when it is read: a malformed record stops the run with the file and the
index, because a silently skipped item changes the score.
"""

import json
import logging

from okapi_pipeline.jsonl import write_json
from okapi_pipeline.languages import language_name
from okapi_pipeline.llm.checks import strict_checks, translation_check
from okapi_pipeline.llm.job import BudgetCheck, job_report, run_llm_job
from okapi_pipeline.llm.prompts import field_request, load_prompt
from okapi_pipeline.llm.requests import Rejected

log = logging.getLogger(__name__)

LETTERS = "ABCDE"
OPTION_KEYS = tuple(f"option_{letter.lower()}" for letter in LETTERS)
# Options an item may have: ARC-Challenge has 3- to 5-option items, MMLU always 4.
OPTION_COUNTS = {"arc": range(3, 6), "mmlu": range(4, 5)}
REQUIRED_KEYS = {
    "arc": ("id", "instruction", "option_a", "option_b", "option_c", "answer"),
    "mmlu": ("id", "instruction", "option_a", "option_b", "option_c", "option_d", "answer"),
    "hellaswag": ("ind", "activity_label", "ctx_a", "ctx_b", "endings", "label"),
}
HELLASWAG_ENDINGS = 4
# Split names the hub mirrors may use for the released split names (the alexandrainst
# MMLU mirror calls the dev file `train`).
HUB_SPLIT_NAMES = {"validation": ("validation", "val"), "val": ("val", "validation"), "dev": ("dev", "train")}


class BenchmarkFormatError(ValueError):
    """A record that does not match the released format."""


def option_texts(record: dict) -> list[str]:
    """The options a multiple-choice record has, in order (absent or empty = not there)."""
    return [record[key] for key in OPTION_KEYS if record.get(key)]


def record_problem(bench: str, record) -> str | None:
    """What is wrong with one record, or None when it matches the released format."""
    if not isinstance(record, dict):
        return f"expected an object, got {type(record).__name__}"
    missing = [key for key in REQUIRED_KEYS[bench] if record.get(key) in (None, "")]
    if missing:
        return f"missing or empty key(s): {', '.join(missing)}"
    if bench == "hellaswag":
        return _hellaswag_problem(record)
    present = [key for key in OPTION_KEYS if record.get(key)]
    if present != list(OPTION_KEYS[: len(present)]):
        return f"options must be consecutive from option_a, got {', '.join(present)}"
    if len(present) not in OPTION_COUNTS[bench]:
        allowed = OPTION_COUNTS[bench]
        expected = " to ".join(str(n) for n in sorted({allowed[0], allowed[-1]}))
        return f"{len(present)} options, expected {expected}"
    if not all(isinstance(record[key], str) for key in present + ["instruction"]):
        return "instruction and options must be strings"
    letters = LETTERS[: len(present)]
    if record["answer"] not in tuple(letters):
        return f"answer {record['answer']!r} is not one of the options {', '.join(letters)}"
    return None


def _hellaswag_problem(record: dict) -> str | None:
    endings = record["endings"]
    if not isinstance(endings, list) or len(endings) != HELLASWAG_ENDINGS:
        count = len(endings) if isinstance(endings, list) else type(endings).__name__
        return f"endings must be a list of {HELLASWAG_ENDINGS} strings, got {count}"
    if not all(isinstance(ending, str) and ending.strip() for ending in endings):
        return "every ending must be a non-empty string"
    try:
        label = int(str(record["label"]).strip())
    except ValueError:
        return f"label {record['label']!r} is not an integer"
    if not 0 <= label < HELLASWAG_ENDINGS:
        return f"label {label} is out of range 0-{HELLASWAG_ENDINGS - 1}"
    return None


def check_records(bench: str, records, where: str) -> list[dict]:
    """Check every record; raise on the first malformed one, naming `where` and its index."""
    if not isinstance(records, list):
        raise BenchmarkFormatError(f"{where}: expected a JSON array of records")
    for index, record in enumerate(records):
        problem = record_problem(bench, record)
        if problem:
            raise BenchmarkFormatError(f"{where}: record {index}: {problem}")
    return records


def read_released_file(bench: str, path) -> list[dict]:
    """Read and check one released file (a JSON array)."""
    with open(path, encoding="utf-8") as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as error:
            raise BenchmarkFormatError(f"{path}: not valid JSON ({error})") from error
    return check_records(bench, records, str(path))


def read_hub_split(bench: str, hub_id: str, lang: str, split: str) -> list[dict]:
    """Read one split of a hub mirror (one config per language) and check it."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id, lang)
    except ValueError as error:  # e.g. no config for this language
        raise BenchmarkFormatError(f"{hub_id}[{lang}]: {error}") from error
    names = [name for name in HUB_SPLIT_NAMES.get(split, (split,)) if name in dataset]
    if not names:
        raise BenchmarkFormatError(f"{hub_id}[{lang}]: no split {split!r} (has {', '.join(dataset)})")
    # Columns absent from a record (e.g. option_e) come back as None: drop them.
    records = [{key: value for key, value in row.items() if value is not None} for row in dataset[names[0]]]
    return check_records(bench, records, f"{hub_id}[{lang}/{names[0]}]")


def load_split(bench: str, lang: str, split: str, source: dict) -> list[dict]:
    """One split of one language from its source: local files, {"files": {split: path}}
    (the rules know the released layout), or a hub mirror, {"hub_id": ...}."""
    if "files" in source:
        return read_released_file(bench, source["files"][split])
    return read_hub_split(bench, source["hub_id"], lang, split)


def prepare_benchmark(bench: str, lang: str, source: dict, splits: list[str], out_path, strict: bool = True) -> dict:
    """Write the checked splits of one benchmark in one language as one normalised file.

    A missing file or a malformed record fails the job when `strict`; otherwise the
    file says the benchmark is unavailable in this language and why, so that its cells
    show "n/a" and every other cell is still scored (e.g. HellaSwag zh, which the hub
    mirrors may lack).
    """
    data = {"benchmark": bench, "language": lang, "source": source}
    try:
        data["splits"] = {split: load_split(bench, lang, split, source) for split in splits}
    except (BenchmarkFormatError, FileNotFoundError) as error:
        if strict:
            raise
        log.warning("%s %s is not available: %s", bench, lang, error)
        data.update(splits={}, unavailable=str(error))
    for split, records in data["splits"].items():
        log.info("%s %s %s: %d records", bench, lang, split, len(records))
    write_json(out_path, data)
    return data


# ---- translation of the English benchmark --------------------------------------------


def translatable_fields(bench: str, record: dict) -> dict[str, str]:
    """The texts of one record that a translation changes (ids, answers and labels stay)."""
    if bench == "hellaswag":
        fields = {key: record[key] for key in ("activity_label", "ctx_a", "ctx_b")}
        fields.update({f"ending_{index}": ending for index, ending in enumerate(record["endings"])})
        return fields
    return {key: record[key] for key in ("instruction", *OPTION_KEYS) if record.get(key)}


def translated_record(bench: str, record: dict, answer: dict) -> dict:
    """The English record with its texts replaced by the translation (fields never sent stay)."""
    translated = dict(record)
    if bench == "hellaswag":
        translated.update({key: answer.get(key, record[key]) for key in ("activity_label", "ctx_a", "ctx_b")})
        translated["endings"] = [
            answer.get(f"ending_{index}", ending) for index, ending in enumerate(record["endings"])
        ]
        translated["ctx"] = (translated["ctx_a"] + " " + translated["ctx_b"]).strip()
        return translated
    translated.update({key: answer[key] for key in translatable_fields(bench, record) if key in answer})
    return translated


def translate_benchmark(
    bench: str,
    lang: str,
    source: dict,
    splits: list[str],
    prompt_file,
    llm_settings: dict,
    out_path,
    qa_path,
    threads: int = 1,
    budget: BudgetCheck | None = None,
) -> dict:
    """Translate the English splits of one benchmark into `lang` through the LLM layer.

    One request per record (question and options together), cached per (benchmark,
    language, split); the answers go through the instruction data's checks, and the
    translated records through the released-format checks. A rejected record is left
    out and listed in the QA report; the job fails when more than `max_reject_share`
    of the records were rejected (after writing its outputs).
    """
    system = load_prompt(prompt_file, language=language_name(lang))
    english = {split: load_split(bench, "en", split, source) for split in splits}
    requests = {
        split: [field_request(system, translatable_fields(bench, record), ("en", lang)) for record in records]
        for split, records in english.items()
    }
    what = f"benchmark translation {bench} {lang}"
    data = {"benchmark": bench, "language": lang, "source": source, "splits": {}}
    splits = {}

    def work(clients):
        every_reject = []
        for split, records in english.items():
            results = clients.ask(
                f"benchmarks/{bench}/{lang}/{split}",
                requests[split],
                check=translation_check(lang, strict_checks(llm_settings)),
            )
            kept, rejects, unchanged = [], [], 0
            for index, (record, result) in enumerate(zip(records, results)):
                if isinstance(result, Rejected):
                    rejects.append({"index": index, "reason": result.reason})
                    continue
                kept.append(translated_record(bench, record, result))
                unchanged += all(result.get(key) == text for key, text in translatable_fields(bench, record).items())
            data["splits"][split] = check_records(bench, kept, f"{bench} {split} translated into {lang}")
            counts = job_report(len(records), rejects)
            splits[split] = {
                **{key: counts[key] for key in ("total", "accepted", "rejected")},
                "unchanged": unchanged,
                "reasons": counts["reasons"],
                "rejects": rejects[:50],
            }
            every_reject += rejects
            log.info(
                "%s %s %s: %d of %d records translated; rejected: %s",
                bench,
                lang,
                split,
                len(kept),
                len(records),
                splits[split]["reasons"],
            )
        return sum(len(records) for records in english.values()), every_reject

    def qa_report(total, rejects):
        qa = {
            "benchmark": bench,
            "language": lang,
            **job_report(total, rejects),
            "unchanged": sum(split["unchanged"] for split in splits.values()),
        }
        qa = {
            key: qa[key] for key in ("benchmark", "language", "total", "accepted", "rejected", "unchanged", "reasons")
        }
        data["translation"] = {key: qa[key] for key in ("total", "accepted", "rejected", "unchanged")}
        write_json(out_path, data)
        return {**qa, "splits": splits}

    return run_llm_job(
        what,
        llm_settings,
        f"benchmarks/{bench}/{lang}",
        work,
        threads=threads,
        budget=budget,
        report_path=qa_path,
        report=qa_report,
    )
