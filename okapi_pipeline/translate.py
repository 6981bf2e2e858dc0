"""Translation of instruction records through the LLM layer, gathering, and QA."""

import json
import logging
from collections import Counter
from pathlib import Path

from okapi_pipeline.jsonl import iter_jsonl, read_jsonl, write_json, write_jsonl
from okapi_pipeline.languages import language_name
from okapi_pipeline.llm import JsonRequest, LLMClient, Rejected, cache_file

log = logging.getLogger(__name__)

FIELDS = ("instruction", "input", "output")
# Translated/English length ratios outside this band are flagged by the QA report.
LENGTH_RATIO_BAND = (0.33, 3.0)


def load_prompt(prompt_file, **values) -> str:
    """A versioned prompt file with its placeholders filled ({{ }} is a literal brace)."""
    return Path(prompt_file).read_text(encoding="utf-8").format(**values).strip()


def non_empty_answers(request: JsonRequest, answer: dict) -> str | None:
    """Every field that was sent comes back as a non-empty string."""
    for key in request.keys:
        value = answer[key]
        if not isinstance(value, str):
            return f"'{key}' is not a string"
        if not value.strip():
            return f"'{key}' is empty"
    return None


def field_request(system: str, fields: dict[str, str], tag: str = "") -> JsonRequest:
    """Only the non-empty fields are sent: an empty string stays empty without asking."""
    sent = {key: value for key, value in fields.items() if value}
    return JsonRequest(system=system, user=sent, keys=tuple(sent), tag=tag)


def translate_shard(source, translated_path, rejects_path, report_path, language: str,
                    prompt_file, llm_settings: dict, cache_name: str, threads: int = 1) -> dict:
    """Translate one shard: instruction, input and output of a record in one request."""
    records = read_jsonl(source)
    system = load_prompt(prompt_file, language=language_name(language))
    requests = [field_request(system, {key: record[key] for key in FIELDS}) for record in records]
    if requests:
        client = LLMClient.from_settings(llm_settings, cache_file(llm_settings, cache_name), threads)
        try:
            results = client.json_requests(requests, check=non_empty_answers)
        finally:
            client.close()
    else:
        results = []
    translated, rejects = [], []
    for record, result in zip(records, results):
        if isinstance(result, Rejected):
            rejects.append({"id": record["id"], "reason": result.reason, "answer": result.answer, "source": record})
        else:
            translated.append({"id": record["id"], **{key: result.get(key, "") if record[key] else "" for key in FIELDS}})
    write_jsonl(translated_path, translated)
    write_jsonl(rejects_path, rejects)
    report = {
        "language": language,
        "total": len(records),
        "accepted": len(translated),
        "rejected": len(rejects),
        "reasons": dict(Counter(reject["reason"] for reject in rejects)),
    }
    write_json(report_path, report)
    log.info("%s: %d of %d records translated", language, len(translated), len(records))
    return report


def gather(inputs, output) -> int:
    """Concatenate JSONL files in the given order."""
    return write_jsonl(output, (record for path in inputs for record in iter_jsonl(path)))


def _split_stats(english: list[dict], translated: list[dict]) -> dict:
    source = {record["id"]: record for record in english}
    pairs = [(source[record["id"]], record) for record in translated if record["id"] in source]
    untranslated = sum(1 for en, tr in pairs if tr["output"].strip() == en["output"].strip())
    low, high = LENGTH_RATIO_BAND
    outliers = [tr["id"] for en, tr in pairs if not low <= len(tr["output"]) / max(len(en["output"]), 1) <= high]
    return {
        "english": len(english),
        "translated": len(translated),
        "missing": len(english) - len(translated),
        "untranslated_outputs": untranslated,
        "untranslated_share": round(untranslated / len(pairs), 4) if pairs else 0.0,
        "length_ratio_outliers": len(outliers),
        "length_ratio_outlier_ids": outliers[:20],
    }


def translation_qa(english_paths, translated_paths, report_paths, out_path, language: str | None = None) -> dict:
    """Per split: counts, rejects by reason, outputs left in English, length-ratio outliers.

    Splits are named after the English files (results/data/en/{split}.jsonl); shard
    reports after their folder (.../{split}/shards/{shard}.report.json).
    """
    splits = {}
    for english_path, translated_path in zip(english_paths, translated_paths):
        splits[Path(english_path).stem] = _split_stats(read_jsonl(english_path), read_jsonl(translated_path))
    rejected = {name: Counter() for name in splits}
    for path in report_paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        rejected[Path(path).parents[1].name].update(report["reasons"])
    for name, reasons in rejected.items():
        splits[name]["rejected"] = sum(reasons.values())
        splits[name]["reasons"] = dict(reasons)
    totals = {key: sum(split[key] for split in splits.values())
              for key in ("english", "translated", "missing", "rejected", "untranslated_outputs",
                          "length_ratio_outliers")}
    qa = {"language": language or Path(translated_paths[0]).parent.name, "length_ratio_band": list(LENGTH_RATIO_BAND),
          "totals": totals, "splits": splits}
    write_json(out_path, qa)
    return qa
