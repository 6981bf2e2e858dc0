"""Self-Instruct as in Alpaca: new English tasks from seed tasks, with Alpaca's filters.

As stanford_alpaca/generate_instruction.py does it: each request shows 3 seed tasks
drawn at random and asks for several new tasks at once; every new task must pass the
length, blacklist and first-character filters and have ROUGE-L <= 0.7 against every
instruction kept so far (seeds included).
"""

import hashlib
import json
import logging
import random
import re
import urllib.request
from array import array
from pathlib import Path

from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.llm.job import BudgetCheck, job_report, run_llm_job
from okapi_pipeline.llm.requests import JsonRequest, Rejected

log = logging.getLogger(__name__)

KEYS = ("instruction", "input", "output")
EXAMPLES_PER_PROMPT = 3
# Alpaca drops instructions of 3 words or fewer, or of more than 150.
MIN_WORDS, MAX_WORDS = 4, 150
# Tasks a text-only model cannot do (Alpaca's list).
BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)


def fetch_seed_tasks(url: str, sha256: str, out_path) -> None:
    """Download the seed file and keep it only if its SHA-256 is the expected one."""
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(f"seed tasks from {url}: SHA-256 {digest} is not self_instruct.seed_tasks_sha256 {sha256}")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_bytes(data)
    log.info("%d seed tasks from %s", len(seed_records(out_path)), url)


def seed_records(path) -> list[dict]:
    """Seed tasks as flat records; Alpaca's format (with `instances`) is accepted too."""
    records = []
    for task in read_jsonl(path):
        instance = task["instances"][0] if "instances" in task else task
        records.append(
            {
                "instruction": task["instruction"].strip(),
                "input": instance.get("input", "").strip(),
                "output": instance["output"].strip(),
            }
        )
    return records


def format_examples(examples: list[dict]) -> str:
    return "\n".join(json.dumps({key: example[key] for key in KEYS}, ensure_ascii=False) for example in examples)


def shape_reason(instruction: str) -> str | None:
    """Why an instruction is unusable on its own (length, blacklist, first character), else None."""
    words = instruction.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "length"
    if any(re.search(rf"\b{keyword}\b", instruction.lower()) for keyword in BLACKLIST):
        return "blacklist keyword"
    # Alpaca: the model tends to prepend this to tasks that need no program.
    if instruction.startswith("Write a program"):
        return "write a program"
    first = instruction[0]
    if not first.isascii():
        return "non-ASCII start"
    if not first.isalnum():
        return "starts with punctuation"
    return None


class RougeFilter:
    """Rejects an instruction too similar (ROUGE-L F) to any instruction kept so far.

    Kept instructions are tokenised once with rouge_score's tokenizer, as in Alpaca's
    generation script. The longest common subsequence comes from rapidfuzz (C++, one call
    for the whole pool) instead of rouge_score's pure-Python table; precision, recall and
    F are computed as rouge_score computes them, so the scores are the same floats. Each
    token is stored as one character of a string (its number in a growing vocabulary), the
    form rapidfuzz reads fastest.
    """

    def __init__(self, threshold: float, instructions: list[str]):
        from rouge_score import tokenizers  # lazy: it loads nltk, and only the filter needs it

        self.tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self.threshold = threshold
        self.vocabulary: dict[str, str] = {}
        self.kept_codes: list[str] = []
        self.kept_lengths = array("d")
        self.seen: set[str] = set()
        for instruction in instructions:
            self.add(instruction)

    def _codes(self, instruction: str) -> str:
        # One code point a distinct token: room for 1.1M, far above an instruction pool's vocabulary.
        tokens = self.tokenizer.tokenize(instruction)
        return "".join(self.vocabulary.setdefault(token, chr(len(self.vocabulary))) for token in tokens)

    def scores(self, instruction: str):
        """ROUGE-L F of `instruction` against every kept instruction, in the order kept."""
        # Lazy, as rouge_score: importing this module (e.g. for the cost estimate) loads neither.
        import numpy as np
        from rapidfuzz import process
        from rapidfuzz.distance import LCSseq

        codes = self._codes(instruction)
        lengths = np.array(self.kept_lengths)  # a copy: a view would block later appends
        if not codes or not self.kept_codes:
            return np.zeros(len(self.kept_codes))
        lcs = process.cdist([codes], self.kept_codes, scorer=LCSseq.similarity, dtype=np.int32)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = lcs / lengths  # rouge_score: the kept instruction is the prediction
            recall = lcs / len(codes)
            fmeasure = 2 * precision * recall / (precision + recall)
        # rouge_score scores 0 where either side has no tokens or nothing is shared.
        return np.where((lengths > 0) & (lcs > 0), fmeasure, 0.0)

    def reason(self, instruction: str) -> str | None:
        if instruction.lower() in self.seen:
            return "duplicate"
        scores = self.scores(instruction)
        if len(scores) and scores.max() > self.threshold:
            return "rouge-l"
        return None

    def add(self, instruction: str) -> None:
        codes = self._codes(instruction)
        self.kept_codes.append(codes)
        self.kept_lengths.append(len(codes))
        self.seen.add(instruction.lower())


def task_keys(tasks_per_request: int) -> tuple[str, ...]:
    """The flat answer keys of one request: instruction_1, input_1, output_1, ... (a local
    model fills one key at a time, so tasks are not nested)."""
    return tuple(f"{key}_{number}" for number in range(1, tasks_per_request + 1) for key in KEYS)


def tasks_request(template: str, examples: list[dict], tasks_per_request: int, tag: str) -> JsonRequest:
    prompt = template.format(examples=format_examples(examples), count=tasks_per_request)
    return JsonRequest(system="", user=prompt, keys=task_keys(tasks_per_request), tag=tag)


def parse_tasks(answer: dict, tasks_per_request: int) -> list[dict]:
    """The tasks of one answer, in order."""
    return [{key: answer[f"{key}_{number}"] for key in KEYS} for number in range(1, tasks_per_request + 1)]


def self_instruct(
    seed_tasks,
    prompt_file,
    llm_settings: dict,
    target_count: int,
    max_attempts: int,
    tasks_per_request: int,
    rouge_l_threshold: float,
    seed: int,
    out_path,
    report_path,
    cache_name: str = "self_instruct",
    threads: int = 1,
    budget: BudgetCheck | None = None,
) -> dict:
    """Generate until `target_count` tasks pass the filters or `max_attempts` tasks were asked for.

    Each request asks for `tasks_per_request` tasks. Rejects are expected here (the
    filters); they are counted, not a reason to fail. With `budget`, refuses to start
    when over budget.
    """
    seeds = seed_records(seed_tasks)
    template = Path(prompt_file).read_text(encoding="utf-8")
    rng = random.Random(seed)
    rouge = RougeFilter(rouge_l_threshold, [task["instruction"] for task in seeds])
    kept: list[dict] = []
    counts = {"requests": 0, "unused": 0}

    def work(clients):
        rejects, attempts = [], 0
        while len(kept) < target_count and attempts < max_attempts:
            size = min(llm_settings["max_concurrency"], -(-(max_attempts - attempts) // tasks_per_request))
            requests = []
            for _ in range(size):
                examples = rng.sample(seeds, min(EXAMPLES_PER_PROMPT, len(seeds)))
                requests.append(
                    tasks_request(
                        template, examples, tasks_per_request, tag=f"seed {seed} request {counts['requests']}"
                    )
                )
                counts["requests"] += 1
            for result in clients.ask(cache_name, requests):
                attempts += tasks_per_request
                if isinstance(result, Rejected):
                    rejects += [{"reason": result.reason}] * tasks_per_request
                    continue
                for task in parse_tasks(result, tasks_per_request):
                    if len(kept) == target_count:
                        counts["unused"] += 1
                        continue
                    reason = task_reason(task, rouge)
                    if reason:
                        rejects.append({"reason": reason})
                        continue
                    task = {key: str(task[key]).strip() for key in KEYS}
                    rouge.add(task["instruction"])
                    kept.append({"id": f"selfinstruct-{len(kept):05d}", **task})
        write_jsonl(out_path, kept)
        return attempts, rejects

    def report(attempts, rejects):
        reasons = job_report(attempts, rejects)["reasons"]
        return {
            "target": target_count,
            "requests": counts["requests"],
            "tasks_per_request": tasks_per_request,
            "attempts": attempts,
            "kept": len(kept),
            "rejected": len(rejects),
            "reasons": reasons,
            "not_needed": counts["unused"],
        }

    return run_llm_job(
        "self-instruct",
        llm_settings,
        cache_name,
        work,
        threads=threads,
        budget=budget,
        report_path=report_path,
        report=report,
        check_share=False,
    )


def task_reason(task: dict, rouge: RougeFilter) -> str | None:
    if not all(isinstance(task[key], str) for key in KEYS):
        return "not text"
    instruction = task["instruction"].strip()
    if not instruction or not task["output"].strip():
        return "empty"
    return shape_reason(instruction) or rouge.reason(instruction)
