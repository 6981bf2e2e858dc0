"""What a paid request costs and the budget gate in front of a paid job.

Tokens are estimated without a tokenizer: about 4 characters a token for English
text (OpenAI's rule of thumb), times a factor for scripts that split into more
tokens. It is meant to catch an order-of-magnitude surprise before money is spent,
not to match the invoice; retries of unusable answers are not included.

A workflow stage's job prices its stage's rows of the token counts file that
`snakemake cost_tokens` writes (okapi_pipeline.report.cost) at its own settings and
compares that USD with its budget: the counts hold no prices, so a price change reruns
no job. A job with no stage of its own there (the translator comparison) counts its own
requests.
"""

from __future__ import annotations

import csv
import logging
import math
from typing import Sequence

from okapi_pipeline.llm.errors import UserError
from okapi_pipeline.llm.requests import JsonRequest

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


class BudgetExceeded(UserError, RuntimeError):
    """A paid job's estimated cost is above its `budget_usd`."""


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def usd(input_tokens: int, output_tokens: int, settings: dict) -> float:
    """The local backends (hf, mt) cost no dollars (mt: see the estimate's GPU hours)."""
    if settings["backend"] != "openai":
        return 0.0
    return round(
        input_tokens / 1000 * settings["price_input_per_1k"] + output_tokens / 1000 * settings["price_output_per_1k"],
        4,
    )


def translation_requests_usd(requests: Sequence[JsonRequest], language: str, settings: dict) -> float:
    """USD of translation requests into `language`: prompt, fields and the message overhead
    in, the fields again out (in the target script's tokens), as the estimate counts them."""
    factor = TOKEN_FACTOR.get(language, 1.0)
    input_tokens = sum(tokens(r.system) + tokens(r.user_text()) + MESSAGE_TOKENS for r in requests)
    output_tokens = sum(tokens(r.user_text()) * factor for r in requests)
    return usd(input_tokens, output_tokens, settings)


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


def stage_usd(token_counts, stage: str, settings: dict) -> float:
    """A stage's USD at `settings`' prices: the input and output tokens of its rows in the
    token counts file (every language and model)."""
    with open(token_counts, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["stage"] == stage]
    if not rows:
        raise ValueError(f"{token_counts} has no row of the stage '{stage}'")
    return usd(sum(int(row["input_tokens"]) for row in rows), sum(int(row["output_tokens"]) for row in rows), settings)


def check_stage_budget(token_counts, stage: str, settings: dict) -> None:
    """Refuse to start a job of a paid stage whose estimated cost (all its languages and
    models, from the token counts file, at the job's prices) is over the stage's budget;
    free backends pass without reading the file."""
    if not is_budgeted(settings):
        return
    enforce_budget(
        stage_usd(token_counts, stage, settings),
        settings,
        f"{stage}: the estimated cost",
        f"llm.budget_usd (or {stage}.llm.budget_usd)",
        source=" (see `snakemake cost_estimate`)",
    )
