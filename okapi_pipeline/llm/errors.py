"""The expected failures of a job, reported in one line that says what to do next.

A job's script runs its work inside `exit_on_user_error()`: a failure the user acts on
(a setting to change, a server to wait for, a rerun that resumes from the cache) ends
the job with exit status 1 and one line, in the job's log and on the console; any other
error is a bug and keeps its traceback.
"""

import sys
from contextlib import contextmanager

# Every LLM answer is in the response cache the moment it arrives: a rerun pays for none twice.
RERUN = "rerun: answered requests are cached"


class UserError(Exception):
    """A job stopped for a reason the user fixes: the message says what to change (also
    llm.budget.BudgetExceeded and llm.mt_languages.UnsupportedLanguage)."""


class TooManyRejects(UserError, RuntimeError):
    """More of a job's items were rejected than `max_reject_share` accepts."""


class BatchRoundsExhausted(UserError, RuntimeError):
    """Requests still unanswered (expired or failed lines) after every Batch API round."""


class BatchFailed(UserError, RuntimeError):
    """The Batch API refused a whole batch (e.g. its input file)."""


class MissingApiKey(UserError, RuntimeError):
    """The environment variable that holds the API key is not set."""


def server_failure(error: BaseException) -> str | None:
    """The one line for an API error left after the client's retries (llm.max_retries), or
    None when the error is not one a user acts on."""
    try:
        import openai
    except ImportError:  # an environment without the openai backend has none of its errors
        return None
    if isinstance(error, openai.RateLimitError):
        return (
            f"the server kept refusing with 429 (rate limit) after llm.max_retries retries: {error.message}; "
            f"lower llm.requests_per_minute (or tokens_per_minute, max_concurrency) or wait, then {RERUN}"
        )
    if isinstance(error, openai.InternalServerError):
        return (
            f"the server kept failing with {error.status_code} after llm.max_retries retries: {error.message}; "
            f"wait until it recovers, then {RERUN}"
        )
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return (
            f"the server refused the API key ({error.status_code}): {error.message}; "
            f"check the key in the variable llm.api_key_env names, then {RERUN}"
        )
    if isinstance(error, openai.APIConnectionError):
        return (
            f"no answer from the server after llm.max_retries retries ({error.message}); check llm.base_url, "
            f"the network (API jobs need outbound access) or raise llm.timeout_s, then {RERUN}"
        )
    return None


def failure_line(error: BaseException) -> str | None:
    """The one line that reports an expected failure, or None for any other error (a bug)."""
    if isinstance(error, UserError):
        return str(error)
    return server_failure(error)


@contextmanager
def exit_on_user_error():
    """In a job's script: an expected failure ends it with exit status 1 and one line, at
    the end of the log (stderr, which the script sends there) and on the console."""
    try:
        yield
    except Exception as error:
        line = failure_line(error)
        if line is None:
            raise
        if sys.stderr is not sys.__stderr__ and sys.__stderr__ is not None:
            print(line, file=sys.__stderr__, flush=True)
        # SystemExit with a message: Python writes it to stderr (the log) and exits with 1.
        raise SystemExit(line) from None
