"""Translation of instruction records through the LLM layer, gathering, and QA."""

import json
import logging
from collections import Counter
from pathlib import Path

from okapi_pipeline.jsonl import iter_jsonl, read_jsonl, write_json, write_jsonl
from okapi_pipeline.languages import language_name
from okapi_pipeline.llm.checks import (
    detected_language,
    lingua_language,
    protected_spans,
    strict_checks,
    translation_check,
)
from okapi_pipeline.llm.job import BudgetCheck, job_report, run_llm_job
from okapi_pipeline.llm.prompts import field_request, load_prompt
from okapi_pipeline.llm.requests import Rejected

log = logging.getLogger(__name__)

FIELDS = ("instruction", "input", "output")
# Translated/English length ratios outside this band are flagged by the QA report.
LENGTH_RATIO_BAND = (0.33, 3.0)


def translate_shard(
    source,
    translated_path,
    rejects_path,
    report_path,
    language: str,
    prompt_file,
    llm_settings: dict,
    cache_name: str,
    threads: int = 1,
    budget: BudgetCheck | None = None,
) -> dict:
    """Translate one shard: instruction, input and output of a record in one request.

    Fails (after writing the outputs) when more records were rejected than
    `max_reject_share` accepts; with `budget`, refuses to start when over budget.
    """
    records = read_jsonl(source)
    system = load_prompt(prompt_file, language=language_name(language))
    requests = [field_request(system, {key: record[key] for key in FIELDS}, ("en", language)) for record in records]
    segments = {}

    def work(clients):
        results = clients.ask(cache_name, requests, check=translation_check(language, strict_checks(llm_settings)))
        translated, rejects = [], []
        for record, result in zip(records, results):
            if isinstance(result, Rejected):
                rejects.append({"id": record["id"], "reason": result.reason, "answer": result.answer, "source": record})
            else:
                translated.append(
                    {"id": record["id"], **{key: result.get(key, "") if record[key] else "" for key in FIELDS}}
                )
        write_jsonl(translated_path, translated)
        segments.update(clients.mt_counts(cache_name))
        return len(records), rejects

    def report(total, rejects):
        return {**job_report(total, rejects, language=language), **({"segments": segments} if segments else {})}

    return run_llm_job(
        f"translation {cache_name}",
        llm_settings,
        cache_name,
        work,
        threads=threads,
        budget=budget,
        rejects_path=rejects_path,
        report_path=report_path,
        report=report,
    )


def gather(inputs, output) -> int:
    """Concatenate JSONL files in the given order."""
    return write_jsonl(output, (record for path in inputs for record in iter_jsonl(path)))


def split_stats(english: list[dict], translated: list[dict], language: str) -> dict:
    source = {record["id"]: record for record in english}
    pairs = [(source[record["id"]], record) for record in translated if record["id"] in source]
    untranslated = sum(1 for en, tr in pairs if tr["output"].strip() == en["output"].strip())
    low, high = LENGTH_RATIO_BAND
    outliers = [tr["id"] for en, tr in pairs if not low <= len(tr["output"]) / max(len(en["output"]), 1) <= high]
    broken = [
        tr["id"]
        for en, tr in pairs
        if any(span not in tr[key] for key in FIELDS for span in protected_spans(en[key]) if span.startswith("`"))
    ]
    judged = in_language = 0
    if lingua_language(language) is not None:
        for _, tr in pairs:
            found = detected_language(" ".join(tr[key] for key in FIELDS))
            if found is not None:
                judged += 1
                in_language += found == language
    return {
        "english": len(english),
        "translated": len(translated),
        "missing": len(english) - len(translated),
        "untranslated_outputs": untranslated,
        "untranslated_share": round(untranslated / len(pairs), 4) if pairs else 0.0,
        "length_ratio_outliers": len(outliers),
        "length_ratio_outlier_ids": outliers[:20],
        "broken_code": len(broken),
        "broken_code_ids": broken[:20],
        # Records long enough to judge; null where the identifier does not know the language.
        "language_judged": judged if lingua_language(language) is not None else None,
        "in_target_language_share": round(in_language / judged, 4) if judged else None,
    }


def translation_qa(english_paths: dict, translated_paths: dict, report_paths: dict, out_path, language: str) -> dict:
    """Per split: counts, rejects by reason, outputs left in English, length-ratio outliers,
    broken code, and the share of records an offline identifier finds in the target language.

    english_paths, translated_paths: each split's file, by split name; report_paths: each
    split's shard reports (translate_shard's), by split name.
    """
    splits = {
        name: split_stats(read_jsonl(english_paths[name]), read_jsonl(translated_paths[name]), language)
        for name in english_paths
    }
    rejected = {name: Counter() for name in splits}
    segmented = {name: Counter() for name in splits}
    for name, paths in report_paths.items():
        for path in paths:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
            rejected[name].update(report["reasons"])
            segmented[name].update(report.get("segments", {}))
    for name, reasons in rejected.items():
        splits[name]["rejected"] = sum(reasons.values())
        splits[name]["reasons"] = dict(reasons)
        if segmented[name]:
            # The mt backend: sentences translated, and those cut to the model's limit.
            splits[name]["segments"] = segmented[name]["segments"]
            splits[name]["segments_cut"] = segmented[name]["cut"]
    totals = {
        key: sum(split[key] for split in splits.values())
        for key in (
            "english",
            "translated",
            "missing",
            "rejected",
            "untranslated_outputs",
            "length_ratio_outliers",
            "broken_code",
            "language_judged",
            "segments",
            "segments_cut",
        )
        if all(split.get(key) is not None for split in splits.values())
    }
    judged = [split for split in splits.values() if split["in_target_language_share"] is not None]
    totals["in_target_language_share"] = (
        round(
            sum(s["in_target_language_share"] * s["language_judged"] for s in judged)
            / sum(s["language_judged"] for s in judged),
            4,
        )
        if judged
        else None
    )
    qa = {"language": language, "length_ratio_band": list(LENGTH_RATIO_BAND), "totals": totals, "splits": splits}
    write_json(out_path, qa)
    return qa
