"""Reward model (Okapi section 3.2): the SFT model with a one-logit head.

Trained on (chosen, rejected) pairs with the pairwise loss
-log sigmoid(r_chosen - r_rejected). As in the original, the blocks below the top
`trainable_top_blocks` are frozen and the rest (top blocks, embeddings, final norm,
head) trains; `freeze_embeddings: true` freezes the embeddings too. The text scored
is the Alpaca prompt followed by the response.
"""

import logging

from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.modeling import freeze_lower_blocks, load_scorer, load_tokenizer
from okapi_pipeline.training.sft import held_out_split
from okapi_pipeline.training.throughput import speed_arguments
from okapi_pipeline.training.trainer import Stage, run_trainer, trainer_arguments, training_layout

log = logging.getLogger(__name__)


def split_pairs(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole prompts (all pairs of one ranking together), so no prompt is in both."""
    ids = sorted({pair["id"] for pair in pairs})
    if len(ids) < 2:
        return held_out_split(pairs, fraction, seed)
    train_ids, _ = held_out_split(ids, fraction, seed)
    train_ids = set(train_ids)
    return [p for p in pairs if p["id"] in train_ids], [p for p in pairs if p["id"] not in train_ids]


def read_pairs(pairs_path, settings: dict) -> tuple[list[dict], list[dict]]:
    """The preference pairs of a ranking stage, split into train and held out."""
    pairs = read_jsonl(pairs_path)
    if not pairs:
        raise ValueError(f"no preference pairs in {pairs_path}")
    return split_pairs(pairs, settings["held_out_fraction"], settings["seed"])


def tokenize_pair(pair: dict, tokenizer, max_length: int) -> dict:
    """Token ids of prompt + chosen and prompt + rejected, each at most max_length long.

    A long prompt loses its start (the BOS token stays) before a response is cut:
    the responses are what the pair compares.
    """
    prompt = tokenizer(alpaca_prompt(pair["instruction"], pair.get("input", "")))["input_ids"]
    head = prompt[:1] if prompt[:1] == [tokenizer.bos_token_id] else []

    def ids(response: str) -> list[int]:
        answer = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        room = max(max_length - len(answer), max_length // 2) - len(head)
        body = prompt[len(head) :]
        return (head + body[max(len(body) - room, 0) :] + answer)[:max_length]

    return {"chosen_ids": ids(pair["prefered_output"]), "rejected_ids": ids(pair["rejected_output"])}


def score_sequences(model, tokenizer, sequences: list[list[int]], batch_size: int = 16) -> list[float]:
    """The reward of each token sequence (read at its last non-pad token)."""
    import torch

    scores = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = tokenizer.pad({"input_ids": sequences[start : start + batch_size]}, return_tensors="pt")
            batch = {key: value.to(model.device) for key, value in batch.items()}
            scores.extend(model(**batch).logits.squeeze(-1).float().tolist())
    return scores


def pair_accuracy(model, tokenizer, examples: list[dict]) -> float | None:
    """Share of pairs whose chosen response scores above the rejected one."""
    if not examples:
        return None
    chosen = score_sequences(model, tokenizer, [e["chosen_ids"] for e in examples])
    rejected = score_sequences(model, tokenizer, [e["rejected_ids"] for e in examples])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(examples)


def train_reward_model(sft_dir, pairs_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1) -> dict:
    """Train a reward model from the SFT model on preference pairs; save it with a summary."""
    train, held_out = read_pairs(pairs_path, settings)
    log.info("reward model on %d pairs (%d held out) from %s", len(train), len(held_out), pairs_path)

    def build(precision) -> Stage:
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        tokenizer = load_tokenizer(sft_dir)
        model = load_scorer(sft_dir, tokenizer, settings["seed"], precision.train_dtype)
        top = settings["trainable_top_blocks"]
        trainable = freeze_lower_blocks(model, top, settings["freeze_embeddings"])
        log.info("%d trainable parameters (blocks below the top %d frozen)", trainable, top)
        held_out_examples = [tokenize_pair(p, tokenizer, settings["max_length"]) for p in held_out]
        layout = training_layout("reward_model", model, settings, precision)
        args = RewardConfig(
            **trainer_arguments(settings, checkpoint_dir, precision, evaluate=False, layout=layout),
            **speed_arguments("reward_model", precision, settings, model),
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([tokenize_pair(p, tokenizer, settings["max_length"]) for p in train]),
            processing_class=tokenizer,
        )

        def summary(trainer) -> dict:
            accuracy = pair_accuracy(trainer.model, tokenizer, held_out_examples)
            log.info("held-out pair accuracy: %s", accuracy)
            return {
                "train_pairs": len(train),
                "held_out_pairs": len(held_out),
                "held_out_accuracy": accuracy,
                "train_accuracy": [
                    {"step": e["step"], "accuracy": e["accuracy"]} for e in trainer.state.log_history if "accuracy" in e
                ],
            }

        return Stage(trainer, tokenizer, trainable, summary)

    return run_trainer(
        "reward_model",
        build,
        inputs=(sft_dir, pairs_path),
        out_dir=out_dir,
        settings=settings,
        checkpoint_dir=checkpoint_dir,
        threads=threads,
    )
