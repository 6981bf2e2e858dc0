"""Translation of instruction records through the LLM layer, gathering, and QA."""

import functools
import json
import logging
import re
from collections import Counter
from pathlib import Path

from okapi_pipeline.jsonl import iter_jsonl, read_jsonl, write_json, write_jsonl
from okapi_pipeline.languages import OKAPI_GROUPS, language_name
from okapi_pipeline.llm import JsonRequest, LLMClient, Rejected, cache_file, check_reject_share

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


# Spans a translation must keep verbatim: fenced code, inline code, URLs, e-mail
# addresses and placeholders ({name}, {{name}}, <noinput>).
PROTECTED = re.compile(
    r"```.*?```|`[^`\n]+`|https?://[^\s<>\"'`)\]]*[^\s<>\"'`)\].,;:!?]|[\w.+-]+@[\w-]+\.[\w.]*\w"
    r"|\{\{?[A-Za-z_][\w.]*\}\}?|<[a-z_]+>",
    re.S,
)
DIGITS = re.compile(r"\d+")
# Below this many letters (outside protected spans) a text is too short to judge its language.
MIN_LETTERS_FOR_LANGUAGE = 20


def protected_spans(text: str) -> list[str]:
    return PROTECTED.findall(text)


def numbers(text: str) -> Counter:
    """Digit runs as numbers, so 1,000 and 1.000 agree and any script's digits count."""
    return Counter(int(run) for run in DIGITS.findall(PROTECTED.sub(" ", text)))


def prose(text: str) -> str:
    """The text with protected spans and digits removed: what the language is judged on."""
    return DIGITS.sub(" ", PROTECTED.sub(" ", text))


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


@functools.lru_cache(maxsize=None)
def language_detector():
    """An offline identifier over English and the Okapi languages lingua knows.

    Low-accuracy (trigram) mode: loads in about a second instead of a dozen, and is
    reliable on sentences; shorter texts are not judged.
    """
    from lingua import LanguageDetectorBuilder

    languages = [lang for code in ["en", *(c for group in OKAPI_GROUPS.values() for c in group)]
                 if (lang := lingua_language(code)) is not None]
    return LanguageDetectorBuilder.from_languages(*languages).with_minimum_relative_distance(0.1) \
        .with_low_accuracy_mode().build()


def lingua_language(code: str):
    """The lingua Language of an ISO 639-1 code, or None where lingua has no model."""
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.upper(), None)
    return Language.from_iso_code_639_1(iso) if iso is not None else None


def detected_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, None when too short or unsure."""
    text = prose(text)
    if letters(text) < MIN_LETTERS_FOR_LANGUAGE:
        return None
    found = language_detector().detect_language_of(text)
    return found.iso_code_639_1.name.lower() if found is not None else None


def translation_problem(source: str, translated: str, language: str) -> str | None:
    """Why a translated field is unusable, else None: a protected span or a number was
    changed or dropped, the text was left in English, or it is in another language."""
    for span in protected_spans(source):
        if span not in translated:
            kind = "code block" if span.startswith("```") else "code" if span.startswith("`") else \
                "URL" if span.startswith("http") else "placeholder" if span[0] in "{<" else "e-mail address"
            return f"{kind} not kept"
    missing = numbers(source) - numbers(translated)
    if missing:
        return f"number {next(iter(missing))} not kept"
    if translated.strip() == source.strip() and letters(prose(source)) >= MIN_LETTERS_FOR_LANGUAGE:
        return "left untranslated"
    if lingua_language(language) is not None:
        found = detected_language(translated)
        if found is not None and found != language:
            return f"wrong language ({found})"
    return None


def translation_check(language: str, strict: bool = True):
    """The check of a translation answer: every field non-empty and, when strict,
    protected spans, numbers and the language in order."""

    def check(request: JsonRequest, answer: dict) -> str | None:
        reason = non_empty_answers(request, answer)
        if reason or not strict:
            return reason
        for key in request.keys:
            problem = translation_problem(request.user[key], answer[key], language)
            if problem:
                return f"'{key}': {problem}"
        return None

    return check


def field_request(system: str, fields: dict[str, str], languages: tuple[str, str] | None = None) -> JsonRequest:
    """Only the non-empty fields are sent: an empty string stays empty without asking.

    `languages` (source, target) is what the `mt` backend translates between.
    """
    sent = {key: value for key, value in fields.items() if value}
    return JsonRequest(system=system, user=sent, keys=tuple(sent), languages=languages)


def segment_counts(results) -> dict:
    """What the `mt` backend reports with its answers: segments translated and sentences
    cut to the model's limit (absent for the other backends)."""
    counts = Counter()
    for result in results:
        if isinstance(result, Rejected):
            try:
                result = json.loads(result.answer)
            except json.JSONDecodeError:
                continue
        if isinstance(result, dict):
            counts.update(result.get("_mt", {}))
    return dict(counts)


def strict_checks(llm_settings: dict) -> bool:
    return llm_settings.get("answer_checks", "strict") == "strict"


def translate_shard(source, translated_path, rejects_path, report_path, language: str,
                    prompt_file, llm_settings: dict, cache_name: str, threads: int = 1) -> dict:
    """Translate one shard: instruction, input and output of a record in one request.

    Fails (after writing the outputs) when more records were rejected than
    `max_reject_share` accepts.
    """
    records = read_jsonl(source)
    system = load_prompt(prompt_file, language=language_name(language))
    requests = [field_request(system, {key: record[key] for key in FIELDS}, ("en", language)) for record in records]
    if requests:
        client = LLMClient.from_settings(llm_settings, cache_file(llm_settings, cache_name), threads)
        try:
            results = client.json_requests(requests, check=translation_check(language, strict_checks(llm_settings)))
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
    if segment_counts(results):
        report["segments"] = segment_counts(results)
    write_json(report_path, report)
    log.info("%s: %d of %d records translated; rejected: %s", language, len(translated), len(records),
             report["reasons"])
    check_reject_share(report, llm_settings, f"translation {cache_name}", cache_file(llm_settings, cache_name))
    return report


def gather(inputs, output) -> int:
    """Concatenate JSONL files in the given order."""
    return write_jsonl(output, (record for path in inputs for record in iter_jsonl(path)))


def split_stats(english: list[dict], translated: list[dict], language: str) -> dict:
    source = {record["id"]: record for record in english}
    pairs = [(source[record["id"]], record) for record in translated if record["id"] in source]
    untranslated = sum(1 for en, tr in pairs if tr["output"].strip() == en["output"].strip())
    low, high = LENGTH_RATIO_BAND
    outliers = [tr["id"] for en, tr in pairs if not low <= len(tr["output"]) / max(len(en["output"]), 1) <= high]
    broken = [tr["id"] for en, tr in pairs
              if any(span not in tr[key] for key in FIELDS for span in protected_spans(en[key]) if span.startswith("`"))]
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


def translation_qa(english_paths, translated_paths, report_paths, out_path, language: str | None = None) -> dict:
    """Per split: counts, rejects by reason, outputs left in English, length-ratio outliers,
    broken code, and the share of records an offline identifier finds in the target language.

    Splits are named after the English files (results/data/en/{split}.jsonl); shard
    reports after their folder (.../{split}/shards/{shard}.report.json).
    """
    language = language or Path(translated_paths[0]).parent.name
    splits = {}
    for english_path, translated_path in zip(english_paths, translated_paths):
        splits[Path(english_path).stem] = split_stats(read_jsonl(english_path), read_jsonl(translated_path),
                                                       language)
    rejected = {name: Counter() for name in splits}
    segmented = {name: Counter() for name in splits}
    for path in report_paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        rejected[Path(path).parents[1].name].update(report["reasons"])
        segmented[Path(path).parents[1].name].update(report.get("segments", {}))
    for name, reasons in rejected.items():
        splits[name]["rejected"] = sum(reasons.values())
        splits[name]["reasons"] = dict(reasons)
        if segmented[name]:
            # The mt backend: sentences translated, and those cut to the model's limit.
            splits[name]["segments"] = segmented[name]["segments"]
            splits[name]["segments_cut"] = segmented[name]["cut"]
    totals = {key: sum(split[key] for split in splits.values())
              for key in ("english", "translated", "missing", "rejected", "untranslated_outputs",
                          "length_ratio_outliers", "broken_code", "language_judged", "segments", "segments_cut")
              if all(split.get(key) is not None for split in splits.values())}
    judged = [split for split in splits.values() if split["in_target_language_share"] is not None]
    totals["in_target_language_share"] = round(
        sum(s["in_target_language_share"] * s["language_judged"] for s in judged)
        / sum(s["language_judged"] for s in judged), 4) if judged else None
    qa = {"language": language, "length_ratio_band": list(LENGTH_RATIO_BAND), "totals": totals, "splits": splits}
    write_json(out_path, qa)
    return qa
