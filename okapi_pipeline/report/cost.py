"""Token and cost estimates of the API stages.

`count_tokens` gives one row per (stage, language, model) from the English records, the
seed tasks and the prompts (tokens counted as okapi_pipeline.llm.budget counts them, with
the tokenizer of each stage's API model where tiktoken has one):
`snakemake cost_tokens` writes it once, and every paid job's budget gate prices its
stage's rows at its own settings (okapi_pipeline.llm.budget.check_stage_budget).
`price` adds USD (and GPU hours of an `mt` stage) at the configured prices: the file
`snakemake cost_estimate` writes.
"""

import csv
import functools
import json
import logging
import math
from pathlib import Path
from statistics import mean

from okapi_pipeline.config import (
    llm_settings_by_stage,
    ranking_responders,
    seed_tasks_path,
    self_instruct_needed,
    split_sizes,
)
from okapi_pipeline.data.self_instruct import EXAMPLES_PER_PROMPT, format_examples, seed_records
from okapi_pipeline.evaluation.benchmarks import load_split, translatable_fields
from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.languages import SOURCE_LANGUAGE, target_languages
from okapi_pipeline.llm.budget import (
    CHARS_PER_TOKEN,
    MESSAGE_TOKENS,
    TOKEN_FACTOR,
    counting_model,
    token_counter,
    usd,
)
from okapi_pipeline.llm.segments import segments

log = logging.getLogger(__name__)

RANKING_ANSWER_TOKENS = 20
# The token counts file (what a paid job's budget gate reads) and the estimate file (priced).
TOKEN_COLUMNS = ("stage", "language", "model", "requests", "input_tokens", "output_tokens", "segments")
COLUMNS = ("stage", "language", "model", "requests", "input_tokens", "output_tokens", "usd", "segments", "gpu_hours")
SECONDS_PER_HOUR = 3600


def estimate_costs(llm: dict, out_path=None, **inputs) -> list[dict]:
    """One row per (stage, language, model): requests, tokens and USD at the prices of the
    stages' `llm` settings, written to `out_path` if given. `inputs` are `count_tokens`'
    (the stages and the models that count their tokens follow from `llm`)."""
    rows = price(count_tokens(**inputs, stages=tuple(llm), models=counting_models(llm)), llm)
    if out_path is not None:
        write_rows(out_path, rows, COLUMNS)
        log_estimate(rows, llm)
    return rows


def counting_models(llm: dict) -> dict:
    """The model whose tokenizer counts each stage's tokens (`llm`: stage -> settings; None: a
    local backend, 4 characters a token)."""
    return {stage: counting_model(settings) for stage, settings in llm.items()}


def count_tokens(
    instructions,
    seed_tasks,
    prompts: dict,
    languages: list[str],
    responders: list[str],
    sizes: dict,
    self_instruct: dict,
    ranking: dict,
    stages: tuple[str, ...],
    benchmark_fields: dict | None = None,
    models: dict | None = None,
) -> list[dict]:
    """One row per (stage, language, model): requests, input and output tokens, segments.

    `instructions` gives the average English record; `prompts` maps translation,
    self_instruct, rank and back_translation to their prompt files; `responders` are
    the models whose responses are ranked (none: the released pairs); `sizes` the sizes
    of the splits translated here (a released split costs nothing); `self_instruct` the
    stage's settings (None: no split draws on it, no request). With `back_translation`
    among the `stages`, back-translation has rows of its own (else it counts in the
    ranking rows). Segments are the sentences an `mt` backend would translate, counted on
    the English records. `benchmark_fields` maps each benchmark translated here to the
    texts of its English records (one request each, into every language but English, with
    the prompt `prompts["benchmarks"]`). `models` maps a stage to the model whose tokenizer
    counts its tokens (okapi_pipeline.llm.budget.counting_model; a stage not there, or
    None: 4 characters a token). No prices: a job's budget gate prices its stage's rows
    at its own settings (okapi_pipeline.llm.budget).
    """
    records = read_jsonl(instructions) if instructions else []
    record_segments, prompt_segments, segment_chars = _segment_counts(records)
    text = {name: Path(path).read_text(encoding="utf-8") for name, path in prompts.items()}
    rows = []

    def counter(stage: str):
        return token_counter((models or {}).get(stage))

    @functools.cache
    def record_means(count) -> tuple[float, float]:
        """Mean tokens of a record as translation sends it (JSON) and of its prompt
        (instruction + input), for one tokenizer: stages that share a model count once."""
        if not records:
            return 0, 0
        fields = ("instruction", "input", "output")
        return (
            mean(count(json.dumps({k: r[k] for k in fields if r[k]}, ensure_ascii=False)) for r in records),
            mean(count(r["instruction"] + r["input"]) for r in records),
        )

    count = counter("self_instruct")
    seeds = seed_records(seed_tasks) if self_instruct else []
    examples = count(format_examples(seeds[:EXAMPLES_PER_PROMPT]))
    task_tokens = mean(count(json.dumps(s, ensure_ascii=False)) for s in seeds) if seeds else 0
    # Every request shows 3 seed tasks and asks for tasks_per_request new ones.
    per_request = self_instruct["tasks_per_request"] if self_instruct else 1
    requests = math.ceil(self_instruct["max_attempts"] / per_request) if self_instruct and self_instruct["count"] else 0
    rows.append(
        _row(
            "self_instruct",
            "en",
            "",
            requests,
            requests * (count(text["self_instruct"]) + examples + MESSAGE_TOKENS),
            requests * per_request * task_tokens,
        )
    )

    items = sum(sizes.values())
    count = counter("translation")
    record_tokens = record_means(count)[0]
    # English (the control) is not translated, and its responses are ranked as they are.
    for lang in target_languages(languages):
        factor = TOKEN_FACTOR.get(lang, 1.0)
        rows.append(
            _row(
                "translation",
                lang,
                "",
                items,
                items * (count(text["translation"]) + record_tokens + MESSAGE_TOKENS),
                items * record_tokens * factor,
                items * record_segments,
            )
        )

    k, response_tokens = ranking["responses_per_prompt"], ranking["max_new_tokens"]
    rank_count = counter("ranking")
    # Without a stage of its own, back-translation is the judge's (its model, its tokenizer).
    back_count = counter("back_translation" if "back_translation" in stages else "ranking")
    for model in responders:
        # An item in English: its prompt and K responses (at most max_new_tokens each).
        english = record_means(rank_count)[1] + k * response_tokens
        english_back = record_means(back_count)[1] + k * response_tokens
        for lang in languages:
            factor = TOKEN_FACTOR.get(lang, 1.0)
            back_in = back_count(text["back_translation"]) + english_back * factor + MESSAGE_TOKENS
            rank_in = rank_count(text["rank"]) + english + MESSAGE_TOKENS
            if lang != SOURCE_LANGUAGE and "back_translation" not in stages:
                # One back-translation and one ranking request per item, both the judge's.
                rows.append(
                    _row(
                        "ranking",
                        lang,
                        model,
                        2 * sizes["rm"],
                        sizes["rm"] * (back_in + rank_in),
                        sizes["rm"] * (english + RANKING_ANSWER_TOKENS),
                    )
                )
                continue
            if lang != SOURCE_LANGUAGE:
                # A back-translation request of the stage's own translator, then a ranking request, per item.
                response_segments = k * response_tokens * CHARS_PER_TOKEN / segment_chars if segment_chars else 0
                rows.append(
                    _row(
                        "back_translation",
                        lang,
                        model,
                        sizes["rm"],
                        sizes["rm"] * back_in,
                        sizes["rm"] * english_back,
                        sizes["rm"] * (prompt_segments + response_segments),
                    )
                )
            # English responses need no back-translation: one ranking request per item.
            rows.append(
                _row(
                    "ranking",
                    lang,
                    model,
                    sizes["rm"],
                    sizes["rm"] * rank_in,
                    sizes["rm"] * RANKING_ANSWER_TOKENS,
                )
            )

    benchmark_requests = [fields for records in (benchmark_fields or {}).values() for fields in records]
    if benchmark_requests:
        count = counter("benchmarks")
        prompt = count(text["benchmarks"]) + MESSAGE_TOKENS
        fields_tokens = sum(count(json.dumps(fields, ensure_ascii=False)) for fields in benchmark_requests)
        for lang in target_languages(languages):
            rows.append(
                _row(
                    "benchmarks",
                    lang,
                    "",
                    len(benchmark_requests),
                    len(benchmark_requests) * prompt + fields_tokens,
                    fields_tokens * TOKEN_FACTOR.get(lang, 1.0),
                )
            )

    return rows


def price(rows: list[dict], llm: dict) -> list[dict]:
    """The rows with USD at each stage's prices and GPU hours of an `mt` stage (at its
    `segments_per_second`); `llm` maps each stage to its LLM settings."""
    return [
        {
            **row,
            "usd": usd(row["input_tokens"], row["output_tokens"], llm[row["stage"]]),
            "gpu_hours": gpu_hours(row["segments"], llm[row["stage"]]),
        }
        for row in rows
    ]


def price_estimate(token_counts, llm: dict, out_path) -> list[dict]:
    """The estimate file (COLUMNS) from the token counts file at the configured prices."""
    rows = price(read_token_counts(token_counts), llm)
    write_rows(out_path, rows, COLUMNS)
    log_estimate(rows, llm)
    return rows


def read_token_counts(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {
                **row,
                **{key: int(row[key]) for key in ("requests", "input_tokens", "output_tokens")},
                "segments": int(row["segments"]) if row["segments"] else None,
            }
            for row in csv.DictReader(handle)
        ]


def write_rows(path, rows: list[dict], columns) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def log_estimate(rows: list[dict], llm: dict) -> None:
    for stage in dict.fromkeys(row["stage"] for row in rows):
        hours = [r["gpu_hours"] for r in rows if r["stage"] == stage and r["gpu_hours"] is not None]
        log.info(
            "%s: about $%.2f%s (%s backend)",
            stage,
            sum(r["usd"] for r in rows if r["stage"] == stage),
            f" and {sum(hours):,.0f} GPU hours" if hours else "",
            llm[stage]["backend"],
        )


def _row(stage, language, model, requests, input_tokens, output_tokens, segments=None) -> dict:
    return {
        "stage": stage,
        "language": language,
        "model": model,
        "requests": requests,
        "input_tokens": round(input_tokens),
        "output_tokens": round(output_tokens),
        "segments": round(segments) if segments is not None else None,
    }


def _segment_counts(records: list[dict]) -> tuple[float, float, float]:
    """Mean sentences the `mt` backend translates per record and per prompt (instruction +
    input), and the mean characters of a sentence."""
    if not records:
        return 0.0, 0.0, 0.0
    per_field = [[segments(r[key]) for key in ("instruction", "input", "output")] for r in records]
    sentences = [s for fields in per_field for field in fields for s in field]
    return (
        mean(sum(len(field) for field in fields) for fields in per_field),
        mean(len(fields[0]) + len(fields[1]) for fields in per_field),
        mean(len(s) for s in sentences) if sentences else 0.0,
    )


def gpu_hours(segments, settings: dict) -> float | None:
    """GPU hours of an `mt` stage at its assumed `segments_per_second` (None otherwise)."""
    rate = settings["segments_per_second"]
    if settings["backend"] != "mt" or not rate or segments is None:
        return None
    return round(segments / rate / SECONDS_PER_HOUR, 2)


def benchmark_fields(sources: dict) -> dict:
    """The texts a benchmark translation sends, per English record: `sources` maps each
    benchmark to its English `source` (files or hub mirror) and `splits`."""
    return {
        bench: [
            translatable_fields(bench, record)
            for split in entry["splits"]
            for record in load_split(bench, SOURCE_LANGUAGE, split, entry["source"])
        ]
        for bench, entry in sources.items()
    }


def config_estimate(config: dict, instructions=None, benchmark_sources: dict | None = None) -> list[dict]:
    """The estimate of every stage from the workflow config (the rows the CSV holds).

    Without `instructions` (self-instruct runs before them) records count as empty;
    `benchmark_sources` as `benchmark_fields` takes them (none: no benchmark is translated).
    """
    prompts = {
        "translation": config["translation"]["prompt"],
        "self_instruct": config["self_instruct"]["prompt"],
        "rank": config["ranking"]["prompt"],
        "back_translation": config["ranking"]["back_translation_prompt"],
        "benchmarks": config["benchmarks"]["prompt"],
    }
    return estimate_costs(
        llm_settings_by_stage(config),
        instructions=instructions,
        seed_tasks=seed_tasks_path(config),
        prompts=prompts,
        languages=config["languages"],
        responders=ranking_responders(config),
        sizes=split_sizes(config),
        self_instruct=config["self_instruct"] if self_instruct_needed(config) else None,
        ranking=config["ranking"],
        benchmark_fields=benchmark_fields(benchmark_sources or {}),
    )
