"""One LLM job, the same for every stage: budget, requests, accepted vs rejected, report, reject share.

`run_llm_job` checks the budget before any request (the workflow's estimate for the
stage, or the job's own requests where it has no stage of its own), lets the stage's
`work` send its requests through clients it opens by cache name (closed, and their
caches flushed, whatever happens), writes the rejects and the report (one Counter of
reasons), and fails in one line when more items were rejected than `max_reject_share`
accepts. The outputs are written first: the answers stay in the cache, so a rerun
after fixing the cause (or raising the limit) pays nothing for them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from okapi_pipeline.jsonl import write_json, write_jsonl
from okapi_pipeline.llm.budget import check_stage_budget, enforce_budget, is_budgeted, translation_requests_usd
from okapi_pipeline.llm.cache import cache_file
from okapi_pipeline.llm.client import LLMClient
from okapi_pipeline.llm.errors import TooManyRejects
from okapi_pipeline.llm.requests import Check, JsonRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetCheck:
    """Which estimate a job's budget check compares with which setting (not an amount).

    A workflow stage's job names the `token_counts` file (`snakemake cost_tokens`) and
    its `stages` there: each stage's USD at the job's prices is compared with its
    budget_usd. A job with no stage of its own there gives its own translation `requests`
    (into `language`), priced at the job's settings, checked against the setting `budget_key`.
    """

    token_counts: str | Path | None = None
    stages: tuple[str, ...] = ()
    requests: Sequence[JsonRequest] = ()
    language: str | None = None
    budget_key: str = "llm.budget_usd"


def check_budget(settings: dict, what: str, budget: BudgetCheck | None) -> None:
    """Refuse to start a paid (openai) job whose estimate is over budget_usd; the local backends are free."""
    if budget is None or not is_budgeted(settings):
        return
    if budget.stages:
        for stage in budget.stages:
            check_stage_budget(budget.token_counts, stage, settings)
        return
    cost = translation_requests_usd(budget.requests, budget.language, settings)
    enforce_budget(cost, settings, f"{what}: the estimated cost", budget.budget_key)


class Clients:
    """The clients of one job, one per cache name, opened on first use."""

    def __init__(self, settings: dict, threads: int):
        self.settings, self.threads = settings, threads
        self.open: dict[str, LLMClient] = {}

    def __call__(self, cache_name: str) -> LLMClient:
        if cache_name not in self.open:
            self.open[cache_name] = LLMClient.from_settings(
                self.settings, cache_file(self.settings, cache_name), self.threads
            )
        return self.open[cache_name]

    def ask(self, cache_name: str, requests: Sequence[JsonRequest], check: Check | None = None) -> list:
        """One result per request (dict or Rejected); no client is opened for no requests."""
        return self(cache_name).json_requests(requests, check=check) if requests else []

    def mt_counts(self, cache_name: str) -> dict:
        """The mt backend's counts (segments, cut) over what the client `cache_name` was asked
        (empty for the other backends, or when nothing was asked)."""
        return dict(self.open[cache_name].mt_counts) if cache_name in self.open else {}

    def close(self) -> None:
        for client in self.open.values():
            client.close()


def reject_reason(reject: dict) -> str:
    """A reject's reason in the report, prefixed with its step where a job has several."""
    return f"{reject['stage']}: {reject['reason']}" if "stage" in reject else reject["reason"]


def job_report(total: int, rejects: list[dict], accepted_key: str = "accepted", **fields) -> dict:
    """The report of a job: `fields` first, then total, accepted, rejected and the reasons counted."""
    return {
        **fields,
        "total": total,
        accepted_key: total - len(rejects),
        "rejected": len(rejects),
        "reasons": dict(Counter(reject_reason(reject) for reject in rejects)),
    }


def check_reject_share(report: dict, settings: dict, what: str, cache_path) -> None:
    """Fail the job, in one line, when the rejects exceed the accepted failure rate."""
    total, rejected = report["total"], report["rejected"]
    limit = settings["max_reject_share"]
    if total and rejected / total > limit:
        reasons = sorted(report["reasons"].items(), key=lambda item: -item[1])[:3]
        raise TooManyRejects(
            f"{what}: {rejected} of {total} items rejected ({rejected / total:.1%}, more than "
            f"max_reject_share {limit:.1%}); top reasons: {'; '.join(f'{r} x{n}' for r, n in reasons)}; "
            f"answers are kept in {cache_path}: fix the cause or raise llm.max_reject_share, then rerun"
        )


Work = Callable[[Clients], "tuple[int, list[dict]]"]


def run_llm_job(
    what: str,
    settings: dict,
    cache_name: str,
    work: Work,
    *,
    threads: int = 1,
    budget: BudgetCheck | None = None,
    rejects_path=None,
    report_path=None,
    report: Callable[[int, list[dict]], dict] | None = None,
    check_share: bool = True,
) -> dict:
    """Run one LLM job: `work(clients)` sends the requests and returns (items, rejects).

    Each reject is a dict with a `reason` (and a `stage` where the job has several
    steps). `report(total, rejects)` builds the report (default: job_report); it is
    written to `report_path`, the rejects to `rejects_path`, then the reject share is
    checked against max_reject_share (answers kept in the cache `cache_name`).
    """
    check_budget(settings, what, budget)
    clients = Clients(settings, threads)
    try:
        total, rejects = work(clients)
    finally:
        clients.close()
    result = (report or job_report)(total, rejects)
    if rejects_path is not None:
        write_jsonl(rejects_path, rejects)
    if report_path is not None:
        write_json(report_path, result)
    log.info("%s: %d of %d items accepted; rejected: %s", what, total - len(rejects), total, result["reasons"])
    if check_share:
        check_reject_share(result, settings, what, cache_file(settings, cache_name))
    return result
