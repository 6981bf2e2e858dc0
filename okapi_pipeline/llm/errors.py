"""The errors a user fixes in the config (or the data), reported by a job in one line."""

import sys
from contextlib import contextmanager


class UserError(Exception):
    """A job stopped for a reason the user fixes: the message says what to change."""


class TooManyRejects(UserError, RuntimeError):
    """More of a job's items were rejected than `max_reject_share` accepts."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Every user-fixable error: the package's own, a stage over budget, a language the MT model lacks."""
    from okapi_pipeline.cost import BudgetExceeded
    from okapi_pipeline.mt_languages import UnsupportedLanguage

    return UserError, BudgetExceeded, UnsupportedLanguage


@contextmanager
def exit_on_user_error():
    """In a job's script: a user-fixable error ends it with one line at the end of the log
    (the cache keeps every answer); any other error keeps its traceback."""
    try:
        yield
    except user_errors() as error:
        sys.exit(str(error))
