"""Measure the Self-Instruct ROUGE-L filter: rouge_score's pure-Python LCS against rapidfuzz.

    .venv/bin/python tools/measure_rouge_filter.py [--pool 50000] [--candidates 20]

The pool is `--pool` instructions made from the words of the bundled ones
(demo/instructions.jsonl and demo/seed_tasks.jsonl), each as long as a real one drawn
at random, so token counts and vocabulary are realistic. Reports microseconds per
comparison of rouge_score's `_score_lcs` (timed on a sample of the pool) and of
`RougeFilter` (every candidate against the whole pool), and the time to build a pool of
that size: each kept instruction is compared with every one kept before it, pool^2 / 2
comparisons (more where candidates are rejected).
"""

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from okapi_pipeline.data.self_instruct import RougeFilter  # noqa: E402
from okapi_pipeline.jsonl import read_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=50000)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rouge-score-sample", type=int, default=20000, help="comparisons timed for rouge_score")
    args = parser.parse_args()
    from rouge_score import rouge_scorer

    real = [task["instruction"] for task in read_jsonl(ROOT / "demo/instructions.jsonl")]
    real += [task["instruction"] for task in read_jsonl(ROOT / "demo/seed_tasks.jsonl")]
    words = [word for text in real for word in text.split()]
    rng = random.Random(0)
    lengths = [len(text.split()) for text in real]
    pool = [" ".join(rng.choices(words, k=rng.choice(lengths))) for _ in range(args.pool)]
    candidates = [" ".join(rng.choices(words, k=rng.choice(lengths))) for _ in range(args.candidates)]

    tokenize = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer.tokenize
    pool_tokens = [tokenize(text) for text in pool[: args.rouge_score_sample]]
    candidate_tokens = tokenize(candidates[0])
    start = time.perf_counter()
    for old in pool_tokens:
        rouge_scorer._score_lcs(candidate_tokens, old)
    before = (time.perf_counter() - start) / len(pool_tokens)

    start = time.perf_counter()
    rouge = RougeFilter(0.7, pool)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for candidate in candidates:
        rouge.reason(candidate)
    after = (time.perf_counter() - start) / (len(candidates) * len(pool))

    comparisons = args.pool * (args.pool - 1) / 2
    print(f"pool {args.pool:,} instructions, {comparisons:,.0f} comparisons to build it")
    print(f"rouge_score _score_lcs: {before * 1e6:.2f} us per comparison, {comparisons * before / 3600:,.1f} h")
    print(
        f"RougeFilter (rapidfuzz): {after * 1e6:.3f} us per comparison, {comparisons * after / 60:,.1f} min "
        f"({before / after:,.0f}x); tokenising the pool once: {setup:.1f} s"
    )


if __name__ == "__main__":
    main()
