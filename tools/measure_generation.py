"""Measure response generation before and after batching by length: tokens/s of the same
model on the same prompts.

    .venv/bin/python tools/measure_generation.py [--model-dir DIR] [--prompts 120] [--repeats 2]

before: transformers' generate in fixed batches of 8 prompts in file order (the ranking
stage's previous loop, through generation.sample_batch); after: generation.generate_responses
(longest prompts first, batches sized from the GPU's free memory, 8 on CPU). Sampling
settings are config.yaml's `ranking` block. The prompts are the demo instructions, repeated
to --prompts. Without --model-dir the demo's tiny Llama is built (a few seconds). Tokens are
the new tokens generated (padding excluded) and the time is spent inside generate(), as in
tools/gpu_check.py; the best of --repeats alternating runs of each is reported, with the
share of padding in the prompt batches.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from okapi_pipeline.config import load_schema, validate_config  # noqa: E402
from okapi_pipeline.data import generation  # noqa: E402
from okapi_pipeline.gpu_check.instruments import GenerationCounter  # noqa: E402
from okapi_pipeline.jsonl import read_jsonl, write_jsonl  # noqa: E402
from okapi_pipeline.template import alpaca_prompt  # noqa: E402

PREVIOUS_BATCH = 8


def build_demo_model(config: dict, work: Path) -> Path:
    from okapi_pipeline.tiny.models import build_tiny_model
    from okapi_pipeline.tiny.tokenizers import train_tokenizer

    tiny = config["tiny_models"]
    train_tokenizer(REPO / tiny["corpus"], work / "tokenizer", tiny["vocab_size"])
    build = config["base_models"]["tiny-llama"]["build"]
    build_tiny_model(work / "tokenizer", REPO / tiny["corpus"], work / "model", build, tiny, threads=1)
    return work / "model"


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """Pad tokens over all prompt tokens of the batches (each padded to its longest prompt)."""
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - sum(lengths) / padded


def before(model_dir, records: list[dict], settings: dict, threads: int) -> list[list[int]]:
    from okapi_pipeline.training.modeling import load_for_generation

    tokenizer, model, _ = load_for_generation(model_dir, threads)
    batches = [
        list(range(start, min(start + PREVIOUS_BATCH, len(records))))
        for start in range(0, len(records), PREVIOUS_BATCH)
    ]
    for batch in batches:
        prompts = [alpaca_prompt(records[i]["instruction"], records[i]["input"]) for i in batch]
        generation.sample_batch(model, tokenizer, prompts, settings, batch[0])
    return batches


def after(model_dir, prompts_path: Path, settings: dict, threads: int, work: Path, lengths: list[int]) -> list:
    summary = generation.generate_responses(
        model_dir, prompts_path, work / "out.jsonl", settings, work / "progress.jsonl", threads=threads
    )
    # The batches generate_responses ran: consecutive runs of the prompts, longest first.
    order, batches, start = generation.longest_first(dict(enumerate(lengths))), [], 0
    for size in summary["batch_sizes"]:
        batches.append(order[start : start + size])
        start += size
    return batches


def prompt_of(record: dict) -> str:
    return alpaca_prompt(record["instruction"], record["input"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a causal LM directory (default: build the demo's tiny Llama)")
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    config = validate_config(
        yaml.safe_load((REPO / "config.yaml").read_text()), load_schema(REPO / "schemas/config.schema.yaml")
    )
    settings = {**config["ranking"], "engine": "hf"}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model_dir = options.model_dir or build_demo_model(config, work)
        demo = read_jsonl(REPO / config["instructions"]["source"])
        records = [{"id": f"rm-{i:05d}", **demo[i % len(demo)]} for i in range(options.prompts)]
        write_jsonl(work / "prompts.jsonl", records)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lengths = [len(ids) for ids in tokenizer([prompt_of(r) for r in records])["input_ids"]]

        counter = GenerationCounter.install()
        results = {"before": [], "after": []}
        for _ in range(options.repeats):
            for scheme in ("before", "after"):
                seconds, tokens = counter.seconds, counter.new_tokens
                if scheme == "before":
                    batches = before(model_dir, records, settings, options.threads)
                else:
                    batches = after(model_dir, work / "prompts.jsonl", settings, options.threads, work, lengths)
                rate = (counter.new_tokens - tokens) / (counter.seconds - seconds)
                results[scheme].append((rate, counter.seconds - seconds, batches))

    print(
        f"{options.model_dir or 'tiny-llama (demo)'}: {options.prompts} prompts "
        f"x {settings['responses_per_prompt']} responses, "
        f"up to {settings['max_new_tokens']} new tokens, load average {os.getloadavg()[0]:.1f}"
    )
    for scheme, runs in results.items():
        rate, seconds, batches = max(runs, key=lambda run: run[0])
        print(
            f"{scheme:>6}: {rate:8,.0f} tokens/s ({seconds:.1f} s in generate), {len(batches)} batches "
            f"of {min(map(len, batches))}-{max(map(len, batches))} prompts, "
            f"prompt padding {100 * padding_share(lengths, batches):.0f}% "
            f"(all runs: {', '.join(f'{r:,.0f}' for r, _, _ in runs)})"
        )


if __name__ == "__main__":
    main()
