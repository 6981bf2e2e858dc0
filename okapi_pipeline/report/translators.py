"""Choosing a translator, measured: the same English sample through every translator.

For each (translator, language): the sample is translated into the language through the
LLM layer (the stage's prompt, cache, checks and rejects), then back into English by the
same translator. The row holds the translation QA figures, the round-trip chrF of the
back-translation against the English source, the seconds per 1K records that the
forward translation took here, and its price per 1K records: USD for an API translator
(the cost estimate's token counts at its prices), GPU hours for a local one.

Round-trip chrF rewards literal translations (and a translator that copies the English
scores 100): read it together with the untranslated share and the in-language share.
"""

import json
import logging
import random
import time
from pathlib import Path

from okapi_pipeline.data.translate import FIELDS, split_stats
from okapi_pipeline.jsonl import read_jsonl, write_json
from okapi_pipeline.languages import language_group, language_name
from okapi_pipeline.llm.budget import translation_requests_usd
from okapi_pipeline.llm.cache import cache_file
from okapi_pipeline.llm.checks import strict_checks, translation_check
from okapi_pipeline.llm.job import BudgetCheck, job_report, run_llm_job
from okapi_pipeline.llm.prompts import field_request, load_prompt
from okapi_pipeline.llm.requests import Rejected

log = logging.getLogger(__name__)

COLUMNS = (
    "language",
    "group",
    "translator",
    "backend",
    "model",
    "records",
    "accepted",
    "rejected",
    "untranslated_share",
    "length_ratio_outliers",
    "broken_code",
    "in_target_language_share",
    "segments_cut",
    "chrf_round_trip",
    "seconds_per_1k",
    "usd_per_1k",
    "gpu_hours_per_1k",
    "device",
)


def sample(records: list[dict], size: int, seed: int) -> list[dict]:
    """The same `size` records for every translator and language."""
    if len(records) <= size:
        return records
    chosen = sorted(random.Random(seed).sample(range(len(records)), size))
    return [records[index] for index in chosen]


def _requests(records: list[dict], system: str, languages: tuple[str, str]) -> list:
    return [field_request(system, {key: record[key] for key in FIELDS}, languages) for record in records]


def _forward(clients, cache_name: str, requests: list, check):
    """Results (dict or Rejected) per record and the seconds the sent requests took
    (None when nothing was sent: every answer came from the cache)."""
    client = clients(cache_name)
    client.backend.prepare()  # loading a model is not translating
    started = time.monotonic()
    results = client.json_requests(requests, check=check)
    seconds = time.monotonic() - started
    return results, (seconds, client.sent) if client.sent else None


def _device() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _timing(settings: dict, cache_name: str, measured) -> dict | None:
    """The forward translation's timing, kept next to the cache: a rerun answered from
    the cache reports the time the translator really took."""
    path = cache_file(settings, cache_name).with_suffix(".timing.json")
    if measured is not None:
        seconds, sent = measured
        record = {
            "seconds": seconds,
            "requests": sent,
            "device": _device() if settings["backend"] != "openai" else "api",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        return record
    return json.loads(path.read_text()) if path.exists() else None


def chrf(hypotheses: list[str], references: list[str]) -> float | None:
    import sacrebleu

    if not hypotheses:
        return None
    return round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)


def compare_translator(
    english_path,
    language: str,
    name: str,
    settings: dict,
    prompt_file,
    back_prompt_file,
    size: int,
    seed: int,
    out_path,
    threads: int = 1,
    gpu_hour_usd: float | None = None,
    budget_key: str = "llm.budget_usd",
) -> dict:
    """One (translator, language) row of the comparison, written as JSON.

    Through the job runner: a paid translator over its budget_usd (the setting
    `budget_key` names) refuses to start before any request."""
    records = sample(read_jsonl(english_path), size, seed)
    forward_cache = f"translators/{name}/{language}/forward"
    back_cache = f"translators/{name}/{language}/back"
    requests = _requests(records, load_prompt(prompt_file, language=language_name(language)), ("en", language))
    back_system = load_prompt(back_prompt_file, language=language_name(language))
    translated, rejects, back, counts = [], [], [], {}

    def work(clients):
        forward, measured = _forward(
            clients, forward_cache, requests, translation_check(language, strict_checks(settings))
        )
        counts.update(measured=measured, mt=clients.mt_counts(forward_cache))
        for record, result in zip(records, forward):
            if isinstance(result, Rejected):
                rejects.append({"id": record["id"], "reason": result.reason})
            else:
                translated.append(
                    {"id": record["id"], **{key: result.get(key, "") if record[key] else "" for key in FIELDS}}
                )
        back.extend(
            clients.ask(
                back_cache,
                _requests(translated, back_system, (language, "en")),
                check=translation_check("en", strict_checks(settings)),
            )
        )
        return len(records), rejects

    run_llm_job(
        f"translator comparison {name} {language}",
        settings,
        forward_cache,
        work,
        threads=threads,
        # There and back: the way back sends about what the forward requests send.
        budget=BudgetCheck(requests=requests * 2, language=language, budget_key=budget_key),
        # A measurement: its rejects are a column of the table, not a failure.
        check_share=False,
    )
    timing = _timing(settings, forward_cache, counts["measured"])
    source = {record["id"]: record for record in records}
    hypotheses, references = [], []
    for record, result in zip(translated, back):
        if isinstance(result, Rejected):
            continue
        for key in FIELDS:
            if source[record["id"]][key]:
                hypotheses.append(result.get(key, ""))
                references.append(source[record["id"]][key])
    qa = split_stats(records, translated, language)
    seconds_per_1k = round(timing["seconds"] / timing["requests"] * 1000, 2) if timing else None
    local = settings["backend"] != "openai"
    on_gpu = bool(timing) and timing["device"] not in ("cpu", "api")
    gpu_hours = round(seconds_per_1k / 3600, 4) if local and on_gpu and seconds_per_1k is not None else None
    row = {
        "language": language,
        "group": language_group(language),
        "translator": name,
        "backend": settings["backend"],
        "model": settings["model"],
        "records": len(records),
        "accepted": len(translated),
        "rejected": len(rejects),
        "untranslated_share": qa["untranslated_share"],
        "length_ratio_outliers": qa["length_ratio_outliers"],
        "broken_code": qa["broken_code"],
        "in_target_language_share": qa["in_target_language_share"],
        "segments_cut": counts["mt"].get("cut") if settings["backend"] == "mt" else None,
        "chrf_round_trip": chrf(hypotheses, references),
        "seconds_per_1k": seconds_per_1k,
        "usd_per_1k": _usd_per_1k(requests, language, settings)
        if not local
        else (round(gpu_hours * gpu_hour_usd, 4) if gpu_hours is not None and gpu_hour_usd is not None else 0.0),
        "gpu_hours_per_1k": gpu_hours,
        "device": timing["device"] if timing else None,
    }
    write_json(out_path, {**row, "reasons": _reasons(rejects), "qa": qa})
    log.info(
        "%s -> %s: %d of %d records, round-trip chrF %s, %s s per 1K records",
        name,
        language,
        len(translated),
        len(records),
        row["chrf_round_trip"],
        seconds_per_1k,
    )
    return row


def _reasons(rejects: list[dict]) -> dict:
    return job_report(len(rejects), rejects)["reasons"]


def _usd_per_1k(requests: list, language: str, settings: dict) -> float:
    """The forward translation's price per 1K records, estimated as `cost_estimate` does."""
    if not requests:
        return 0.0
    return round(translation_requests_usd(requests, language, settings) * 1000 / len(requests), 4)


def comparison_table(row_paths, csv_path, markdown_path, figure_path) -> list[dict]:
    """One row per (language, translator): CSV, Markdown and a figure."""
    import pandas as pd

    rows = [{key: json.loads(Path(path).read_text(encoding="utf-8"))[key] for key in COLUMNS} for path in row_paths]
    table = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["language", "translator"], kind="stable")
    table.to_csv(csv_path, index=False)
    Path(markdown_path).write_text(table.to_markdown(index=False, floatfmt="g") + "\n", encoding="utf-8")
    _figure(table, figure_path)
    return table.to_dict("records")


def _figure(table, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = list(dict.fromkeys(table["language"]))
    translators = list(dict.fromkeys(table["translator"]))
    width = 0.8 / max(len(translators), 1)
    panels = [
        ("chrf_round_trip", "round-trip chrF"),
        ("untranslated_share", "untranslated share"),
        ("seconds_per_1k", "seconds per 1K records"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6))
    for axis, (column, title) in zip(axes, panels):
        for index, name in enumerate(translators):
            part = table[table["translator"] == name].set_index("language")
            values = [part[column].get(lang) for lang in languages]
            values = [float(v) if v is not None and v == v else 0.0 for v in values]
            axis.bar([i + index * width for i in range(len(languages))], values, width, label=name)
        axis.set_xticks([i + width * (len(translators) - 1) / 2 for i in range(len(languages))], languages)
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
