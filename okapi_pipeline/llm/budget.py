"""What a paid request costs and the budget gate in front of a paid job.

Tokens are counted with tiktoken, the tokenizer of OpenAI's models, where it has an
encoding for the stage's model (gpt-3.5-turbo and gpt-4: cl100k_base, gpt-4o:
o200k_base); otherwise (a local backend, a model tiktoken does not know, tiktoken not
installed, or its encoding file not loadable: it downloads each file once into
TIKTOKEN_CACHE_DIR) at about 4 characters a token, OpenAI's rule of thumb for English.
Text that does not exist yet (a translation, a back-translated response) is counted as
its English source times a factor for scripts that split into more tokens. It is meant
to catch an order-of-magnitude surprise before money is spent, not to match the
invoice; retries of unusable answers are not included.

A workflow stage's job prices its stage's rows of the token counts file that
`snakemake cost_tokens` writes (okapi_pipeline.report.cost) at its own settings and
compares that USD with its budget: the counts hold no prices, so a price change reruns
no job. A job with no stage of its own there (the translator comparison) counts its own
requests.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import threading
from typing import Callable, Sequence

from okapi_pipeline.llm.errors import UserError
from okapi_pipeline.llm.requests import JsonRequest

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
# Tokens of a text in a language outside the Latin script per token of its English
# source (rough): what an output or a back-translation input is counted at before it exists.
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
ENCODING_DOWNLOAD_TIMEOUT_S = 20


class BudgetExceeded(UserError, RuntimeError):
    """A paid job's estimated cost is above its `budget_usd`."""


def tokens(text: str, model: str | None = None) -> int:
    """Tokens of `text` as `model`'s tokenizer counts them (None: 4 characters a token)."""
    return token_counter(model)(text)


def counting_model(settings: dict) -> str | None:
    """The model whose tokenizer counts a stage's tokens: an API model's name; None for the
    local backends (hf, mt), which cost no dollars."""
    return settings["model"] if settings["backend"] == "openai" else None


def characters_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def encoding_for_model(model: str):
    """tiktoken's encoding of an OpenAI model (KeyError: a model it does not know). Its
    file loads from TIKTOKEN_CACHE_DIR, downloaded there on first use.

    tiktoken downloads without a timeout: behind a firewall that drops packets the job (or
    plan_cluster) would hang instead of falling back, so the load is waited on for at most
    ENCODING_DOWNLOAD_TIMEOUT_S (TimeoutError) in a thread left behind if it stalls.
    """
    import tiktoken

    loaded: dict = {}

    def load():
        try:
            loaded["encoding"] = tiktoken.encoding_for_model(model)
        except Exception as error:
            loaded["error"] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(ENCODING_DOWNLOAD_TIMEOUT_S)
    if thread.is_alive():
        raise TimeoutError(f"no encoding file after {ENCODING_DOWNLOAD_TIMEOUT_S} s")
    if "error" in loaded:
        raise loaded["error"]
    return loaded["encoding"]


@functools.cache
def token_counter(model: str | None) -> Callable[[str], int]:
    """A function counting tokens of text for `model`: tiktoken's encoding, or 4 characters
    a token where there is none (said once per model in the log, with the reason)."""
    if model is None:
        return characters_tokens
    try:
        encoding = encoding_for_model(model)
    except ImportError:
        reason = "tiktoken is not installed"
    except KeyError:
        reason = "tiktoken has no encoding for this model"
    except (OSError, ValueError) as error:
        # Offline, tiktoken fails to download the file (requests' errors are OSErrors).
        reason = (
            f"tiktoken cannot load its encoding ({type(error).__name__}); "
            "load it once where there is network, into TIKTOKEN_CACHE_DIR"
        )
    else:
        log.info("%s: tokens counted with tiktoken's %s encoding", model, encoding.name)
        # encode_ordinary: text that looks like a special token is counted as text, never refused.
        return lambda text: len(encoding.encode_ordinary(text))
    log.warning("%s: tokens counted at %d characters a token: %s", model, CHARS_PER_TOKEN, reason)
    return characters_tokens


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
    factor, count = TOKEN_FACTOR.get(language, 1.0), token_counter(counting_model(settings))
    input_tokens = sum(count(r.system) + count(r.user_text()) + MESSAGE_TOKENS for r in requests)
    output_tokens = sum(count(r.user_text()) * factor for r in requests)
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
