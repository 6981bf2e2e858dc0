"""Self-Instruct as in Alpaca: new English tasks from seed tasks, with Alpaca's filters."""

import json
import logging
import random
import re
from collections import Counter
from pathlib import Path

from okapi_pipeline.jsonl import read_jsonl, write_json, write_jsonl
from okapi_pipeline.llm import JsonRequest, LLMClient, Rejected, cache_file

log = logging.getLogger(__name__)

KEYS = ("instruction", "input", "output")
EXAMPLES_PER_PROMPT = 3
MIN_WORDS, MAX_WORDS = 3, 150
# Tasks a text-only model cannot do (Alpaca's list).
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)


def seed_records(path) -> list[dict]:
    """Seed tasks as flat records; Alpaca's format (with `instances`) is accepted too."""
    records = []
    for task in read_jsonl(path):
        instance = task["instances"][0] if "instances" in task else task
        records.append({"instruction": task["instruction"].strip(), "input": instance.get("input", "").strip(),
                        "output": instance["output"].strip()})
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
    first = instruction[0]
    if not first.isascii():
        return "non-ASCII start"
    if not first.isalnum():
        return "starts with punctuation"
    return None


class RougeFilter:
    """Rejects an instruction too similar (ROUGE-L F) to any instruction kept so far.

    Kept instructions are tokenised once, as in Alpaca's generation script.
    """

    def __init__(self, threshold: float, instructions: list[str]):
        from rouge_score import rouge_scorer

        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.score_lcs = rouge_scorer._score_lcs
        self.threshold = threshold
        self.kept_tokens: list = []
        self.seen: set[str] = set()
        for instruction in instructions:
            self.add(instruction)

    def reason(self, instruction: str) -> str | None:
        if instruction.lower() in self.seen:
            return "duplicate"
        tokens = self.scorer._tokenizer.tokenize(instruction)
        best = max((self.score_lcs(tokens, old).fmeasure for old in self.kept_tokens), default=0.0)
        if best >= self.threshold:
            return "rouge-l"
        return None

    def add(self, instruction: str) -> None:
        self.kept_tokens.append(self.scorer._tokenizer.tokenize(instruction))
        self.seen.add(instruction.lower())


def self_instruct(seed_tasks, prompt_file, llm_settings: dict, target_count: int, max_attempts: int,
                  rouge_l_threshold: float, seed: int, out_path, report_path,
                  cache_name: str = "self_instruct", threads: int = 1) -> dict:
    """Generate until `target_count` tasks pass the filters or `max_attempts` were made.

    Rejects are expected here (the filters); they are counted, not a reason to fail.
    """
    seeds = seed_records(seed_tasks)
    template = Path(prompt_file).read_text(encoding="utf-8")
    rng = random.Random(seed)
    rouge = RougeFilter(rouge_l_threshold, [task["instruction"] for task in seeds])
    kept: list[dict] = []
    rejected: Counter = Counter()
    attempts = unused = 0
    client = LLMClient.from_settings(llm_settings, cache_file(llm_settings, cache_name), threads) if target_count else None
    try:
        while len(kept) < target_count and attempts < max_attempts:
            size = min(llm_settings["max_concurrency"], max_attempts - attempts)
            requests = []
            for _ in range(size):
                examples = rng.sample(seeds, min(EXAMPLES_PER_PROMPT, len(seeds)))
                prompt = template.format(examples=format_examples(examples))
                requests.append(JsonRequest(system="", user=prompt, keys=KEYS, tag=f"seed {seed} attempt {attempts}"))
                attempts += 1
            for result in client.json_requests(requests):
                if len(kept) == target_count:
                    unused += 1
                    continue
                reason = result.reason if isinstance(result, Rejected) else task_reason(result, rouge)
                if reason:
                    rejected[reason] += 1
                    continue
                task = {key: str(result[key]).strip() for key in KEYS}
                rouge.add(task["instruction"])
                kept.append({"id": f"selfinstruct-{len(kept):05d}", **task})
    finally:
        if client is not None:
            client.close()
    write_jsonl(out_path, kept)
    report = {"target": target_count, "attempts": attempts, "kept": len(kept),
              "rejected": sum(rejected.values()), "reasons": dict(rejected),
              "not_needed": unused}
    write_json(report_path, report)
    log.info("self-instruct: %d kept of %d attempts; rejected %s", len(kept), attempts, dict(rejected))
    return report


def task_reason(task: dict, rouge: RougeFilter) -> str | None:
    if not all(isinstance(task[key], str) for key in KEYS):
        return "not text"
    instruction = task["instruction"].strip()
    if not instruction or not task["output"].strip():
        return "empty"
    return shape_reason(instruction) or rouge.reason(instruction)
