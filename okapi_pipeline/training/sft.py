"""Supervised fine-tuning on translated instructions (Okapi section 3.1).

The Alpaca template stays in English around the translated instruction, input and
output, as in the original. The loss covers prompt and response unless
`completion_only_loss` is set.
"""

import logging
import random

from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.modeling import load_causal_lm, load_tokenizer
from okapi_pipeline.training.throughput import padding_free_batches, speed_arguments
from okapi_pipeline.training.trainer import Stage, run_trainer, trainer_arguments, training_layout

log = logging.getLogger(__name__)

# LoRA is an option for small GPUs; the paper fine-tunes all weights.
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def held_out_split(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded shuffle, at least one held-out record when asked for."""
    records = list(records)
    random.Random(seed).shuffle(records)
    count = round(len(records) * fraction)
    if fraction > 0 and len(records) > 1:
        count = min(max(count, 1), len(records) - 1)
    return records[count:], records[:count]


def prompt_completion(record: dict) -> dict:
    return {"prompt": alpaca_prompt(record["instruction"], record.get("input", "")), "completion": record["output"]}


def sft_examples(records: list[dict], tokenizer, max_length: int, completion_only_loss: bool) -> list[dict]:
    """The records tokenized as trl's SFTTrainer tokenizes a prompt-completion pair (the
    completion ends with the eos; a mask marks the completion's tokens) and cut to
    `max_length` from the end, as trl cuts; an example left with no token to learn from
    is dropped, as trl drops it.

    Tokenized here, not by trl, because trl cuts no example of a padding-free batch; one
    tokenization serves padded and padding-free batches alike.
    """
    examples = []
    for record in records:
        pair = prompt_completion(record)
        completion = pair["completion"]
        if not completion.endswith(tokenizer.eos_token):
            completion += tokenizer.eos_token
        prompt_ids = tokenizer(pair["prompt"])["input_ids"]
        ids = tokenizer(pair["prompt"] + completion)["input_ids"]
        mask = [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
        example = {"input_ids": ids[:max_length], "completion_mask": mask[:max_length]}
        if any(example["completion_mask"]) or not completion_only_loss:
            examples.append(example)
    if len(examples) < len(records):
        log.info(
            "%d of %d records left with no completion token within %d tokens: dropped",
            len(records) - len(examples),
            len(records),
            max_length,
        )
    return examples


def tokens_per_second(log_history: list[dict]) -> float | None:
    """Training tokens (padding excluded, all processes) per second of the training loop."""
    tokens = [entry["num_tokens"] for entry in log_history if "num_tokens" in entry]
    runtime = [entry["train_runtime"] for entry in log_history if "train_runtime" in entry]
    return round(tokens[-1] / runtime[-1], 1) if tokens and runtime else None


def train_sft(base_dir, data_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1) -> dict:
    """Fine-tune the base model on the instruction records; save model, tokenizer and summary."""
    train, held_out = held_out_split(read_jsonl(data_path), settings["held_out_fraction"], settings["seed"])
    log.info("SFT on %d records (%d held out) from %s", len(train), len(held_out), data_path)

    def build(precision) -> Stage:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        tokenizer = load_tokenizer(base_dir)
        peft_config = None
        if settings["finetuning"] == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(task_type="CAUSAL_LM", **LORA)
        beta1, beta2 = settings["adam_betas"]

        def examples(records):
            return sft_examples(records, tokenizer, settings["max_length"], settings["completion_only_loss"])

        train_examples = examples(train)
        model = load_causal_lm(base_dir, tokenizer, precision.train_dtype)
        layout = training_layout("sft", model, settings, precision)
        lengths = [len(example["input_ids"]) for example in train_examples]
        arguments = trainer_arguments(settings, checkpoint_dir, precision, evaluate=bool(held_out), layout=layout)
        # The examples come cut to max_length (sft_examples): trl cuts none in a padding-free batch.
        arguments["max_length"] = None
        args = SFTConfig(
            **arguments,
            **speed_arguments("sft", precision, settings, model),
            padding_free=padding_free_batches(model, lengths, layout.micro_batch),
            adam_beta1=beta1,
            adam_beta2=beta2,
            completion_only_loss=settings["completion_only_loss"],
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train_examples),
            eval_dataset=Dataset.from_list(examples(held_out)) if held_out else None,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        return Stage(
            trainer,
            tokenizer,
            summary=lambda trainer: {
                "train_examples": len(train_examples),
                "held_out_examples": len(held_out),
                "tokens_per_second": tokens_per_second(trainer.state.log_history),
            },
        )

    return run_trainer(
        "sft",
        build,
        inputs=(base_dir, data_path),
        out_dir=out_dir,
        settings=settings,
        checkpoint_dir=checkpoint_dir,
        threads=threads,
    )
