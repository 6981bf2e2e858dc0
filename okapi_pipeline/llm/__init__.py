"""The one LLM-call layer behind self-instruct, translation, back-translation and ranking.

Three backends share one interface: `openai` (llm.openai_api: the official client
against any OpenAI-compatible server, online or through the Batch API, llm.batch),
`hf` (llm.hf: a local transformers causal LM, for offline runs) and `mt` (a local
seq2seq translation model such as NLLB-200, okapi_pipeline.llm.mt). Every answer goes
through the persistent response cache (llm.cache). Every stage runs its job through
llm.job.run_llm_job: budget, requests, accepted vs rejected, report, reject share.

    requests  JsonRequest, Answer, Rejected
    cache     ResponseCache: append-only JSONL, group commits off the event loop
    client    LLMClient: requests through the cache, asked again when unusable
    job       run_llm_job, BudgetCheck (which estimate a job's budget gate compares), the report
    budget    token and USD estimates, the budget gate, BudgetExceeded
    prompts   prompt files and field requests; checks: the translation answer checks
    errors    UserError (and the user-fixable errors a script reports in one line)
"""

from okapi_pipeline.llm.budget import BudgetExceeded
from okapi_pipeline.llm.cache import ResponseCache, cache_file
from okapi_pipeline.llm.client import LLMClient
from okapi_pipeline.llm.errors import TooManyRejects, UserError, exit_on_user_error
from okapi_pipeline.llm.job import BudgetCheck, run_llm_job
from okapi_pipeline.llm.requests import Answer, JsonRequest, Rejected

__all__ = [
    "Answer",
    "BudgetCheck",
    "BudgetExceeded",
    "JsonRequest",
    "LLMClient",
    "Rejected",
    "ResponseCache",
    "TooManyRejects",
    "UserError",
    "cache_file",
    "exit_on_user_error",
    "run_llm_job",
]
