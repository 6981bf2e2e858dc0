"""Token and cost estimates of the API stages, and the budget gate in front of them.

Tokens are estimated without a tokenizer: about 4 characters a token for English
text (OpenAI's rule of thumb), times a factor for scripts that split into more
tokens. It is meant to catch an order-of-magnitude surprise before money is spent,
not to match the invoice; retries of unusable answers are not included.
"""

import csv
import json
import logging
import math
from pathlib import Path
from statistics import mean

from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.languages import SOURCE_LANGUAGE, target_languages

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
# Tokens per English-equivalent token for languages outside the Latin script (rough).
TOKEN_FACTOR = {
    "ru": 2.0,
    "uk": 2.0,
    "sr": 2.0,
    "ar": 2.0,
    "zh": 1.5,
    "hi": 4.0,
    "bn": 4.0,
    "mr": 4.0,
    "ne": 4.0,
    "ta": 4.0,
    "te": 4.0,
    "ml": 4.0,
    "kn": 4.0,
}
MESSAGE_TOKENS = 8  # the chat format's overhead per request
RANKING_ANSWER_TOKENS = 20
COLUMNS = ("stage", "language", "model", "requests", "input_tokens", "output_tokens", "usd", "segments", "gpu_hours")
SECONDS_PER_HOUR = 3600


class BudgetExceeded(RuntimeError):
    """A paid stage's estimated cost is above its `budget_usd`."""


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_costs(
    instructions,
    seed_tasks,
    prompts: dict,
    languages: list[str],
    responders: list[str],
    sizes: dict,
    self_instruct: dict,
    ranking: dict,
    llm: dict,
    out_path=None,
) -> list[dict]:
    """One row per (stage, language, model): requests, tokens and USD at the stage's prices.

    `instructions` gives the average English record; `prompts` maps translation,
    self_instruct, rank and back_translation to their prompt files; `responders` are
    the models whose responses are ranked (none: the released pairs); `sizes` the sizes
    of the splits translated here (a released split costs nothing); `self_instruct` the
    stage's settings (None: no split draws on it, no request); `llm` maps each
    stage to its LLM settings. With a `back_translation` stage in `llm`, back-translation
    has rows of its own (else it counts in the ranking rows). An `mt` stage is priced in
    GPU hours: its sentences (segments, counted on the English records) at the stage's
    `segments_per_second`.
    """
    from okapi_pipeline.data.self_instruct import EXAMPLES_PER_PROMPT, format_examples, seed_records

    records = read_jsonl(instructions) if instructions else []
    record_tokens = (
        mean(
            tokens(json.dumps({k: r[k] for k in ("instruction", "input", "output") if r[k]}, ensure_ascii=False))
            for r in records
        )
        if records
        else 0
    )
    prompt_tokens = mean(tokens(r["instruction"] + r["input"]) for r in records) if records else 0
    record_segments, prompt_segments, segment_chars = _segment_counts(records)
    text = {name: Path(path).read_text(encoding="utf-8") for name, path in prompts.items()}
    rows = []

    seeds = seed_records(seed_tasks) if self_instruct else []
    examples = tokens(format_examples(seeds[:EXAMPLES_PER_PROMPT]))
    task_tokens = mean(tokens(json.dumps(s, ensure_ascii=False)) for s in seeds) if seeds else 0
    # Every request shows 3 seed tasks and asks for tasks_per_request new ones.
    per_request = self_instruct["tasks_per_request"] if self_instruct else 1
    requests = math.ceil(self_instruct["max_attempts"] / per_request) if self_instruct and self_instruct["count"] else 0
    rows.append(
        _row(
            "self_instruct",
            "en",
            "",
            requests,
            requests * (tokens(text["self_instruct"]) + examples + MESSAGE_TOKENS),
            requests * per_request * task_tokens,
            llm["self_instruct"],
        )
    )

    items = sum(sizes.values())
    # English (the control) is not translated, and its responses are ranked as they are.
    for lang in target_languages(languages):
        factor = TOKEN_FACTOR.get(lang, 1.0)
        rows.append(
            _row(
                "translation",
                lang,
                "",
                items,
                items * (tokens(text["translation"]) + record_tokens + MESSAGE_TOKENS),
                items * record_tokens * factor,
                llm["translation"],
                items * record_segments,
            )
        )

    k, response_tokens = ranking["responses_per_prompt"], ranking["max_new_tokens"]
    for model in responders:
        for lang in languages:
            factor = TOKEN_FACTOR.get(lang, 1.0)
            english = prompt_tokens + k * response_tokens
            back_in = tokens(text["back_translation"]) + english * factor + MESSAGE_TOKENS
            rank_in = tokens(text["rank"]) + english + MESSAGE_TOKENS
            if lang != SOURCE_LANGUAGE and "back_translation" not in llm:
                # One back-translation and one ranking request per item, both the judge's.
                rows.append(
                    _row(
                        "ranking",
                        lang,
                        model,
                        2 * sizes["rm"],
                        sizes["rm"] * (back_in + rank_in),
                        sizes["rm"] * (english + RANKING_ANSWER_TOKENS),
                        llm["ranking"],
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
                        sizes["rm"] * english,
                        llm["back_translation"],
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
                    llm["ranking"],
                )
            )

    if out_path is None:
        return rows
    with open(out_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for stage in llm:
        hours = [r["gpu_hours"] for r in rows if r["stage"] == stage and r["gpu_hours"] is not None]
        log.info(
            "%s: about $%.2f%s (%s backend)",
            stage,
            sum(r["usd"] for r in rows if r["stage"] == stage),
            f" and {sum(hours):,.0f} GPU hours" if hours else "",
            llm[stage]["backend"],
        )
    return rows


def _row(stage, language, model, requests, input_tokens, output_tokens, settings, segments=None) -> dict:
    input_tokens, output_tokens = round(input_tokens), round(output_tokens)
    return {
        "stage": stage,
        "language": language,
        "model": model,
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "usd": usd(input_tokens, output_tokens, settings),
        "segments": round(segments) if segments is not None else None,
        "gpu_hours": gpu_hours(segments, settings),
    }


def _segment_counts(records: list[dict]) -> tuple[float, float, float]:
    """Mean sentences the `mt` backend translates per record and per prompt (instruction +
    input), and the mean characters of a sentence."""
    from okapi_pipeline.llm.segments import segments

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


def usd(input_tokens: int, output_tokens: int, settings: dict) -> float:
    """The local backends (hf, mt) cost no dollars (mt: see gpu_hours)."""
    if settings["backend"] != "openai":
        return 0.0
    return round(
        input_tokens / 1000 * settings["price_input_per_1k"] + output_tokens / 1000 * settings["price_output_per_1k"],
        4,
    )


def config_estimate(config: dict, instructions=None) -> list[dict]:
    """The estimate of every stage from the workflow config (the rows the CSV holds).

    Without `instructions` (self-instruct runs before them) records count as empty.
    """
    from okapi_pipeline.config import (
        LLM_STAGES,
        llm_settings,
        ranking_responders,
        seed_tasks_path,
        self_instruct_needed,
        split_sizes,
    )

    prompts = {
        "translation": config["translation"]["prompt"],
        "self_instruct": config["self_instruct"]["prompt"],
        "rank": config["ranking"]["prompt"],
        "back_translation": config["ranking"]["back_translation_prompt"],
    }
    return estimate_costs(
        instructions,
        seed_tasks_path(config),
        prompts,
        config["languages"],
        ranking_responders(config),
        split_sizes(config),
        config["self_instruct"] if self_instruct_needed(config) else None,
        config["ranking"],
        {stage: llm_settings(config, stage) for stage in LLM_STAGES},
    )


def check_budget(config: dict, stage: str, settings: dict, instructions=None) -> None:
    """Refuse to start a paid stage whose estimate (all its languages and models) is over budget.

    Called by the stage's jobs before any request, with the same estimate as
    `snakemake cost_estimate`; the hf backend is free and never checked.
    """
    if not is_budgeted(settings):
        return
    cost = sum(row["usd"] for row in config_estimate(config, instructions) if row["stage"] == stage)
    enforce_budget(
        cost,
        settings,
        f"{stage}: the estimated cost",
        f"llm.budget_usd (or {stage}.llm.budget_usd)",
        source=" (see `snakemake cost_estimate`)",
    )


def is_budgeted(settings: dict) -> bool:
    """Only a paid (openai) backend with a budget is checked."""
    return settings["backend"] == "openai" and settings["budget_usd"] is not None


def enforce_budget(cost: float, settings: dict, what: str, budget_key: str, source: str = "") -> None:
    """Raise BudgetExceeded, in one line saying which key to raise, when `cost` is over budget."""
    budget = settings["budget_usd"]
    if cost > budget:
        raise BudgetExceeded(
            f"{what} ${cost:,.2f}{source} exceeds budget_usd ${budget:,.2f}; "
            f"to allow it, set {budget_key} to at least {math.ceil(cost)} in your config file and run again"
        )
    log.info("%s $%.2f is within the budget of $%s", what, cost, budget)
