"""DPO (beyond the paper): the SFT model trained directly on the preference pairs.

Direct preference optimisation (Rafailov et al. 2023) needs no reward model: the
policy learns from the same (chosen, rejected) pairs the reward model learns from,
against a frozen copy of the SFT model. Only the top blocks train, as in PPO, so the
two methods change the same weights and compare on equal terms in the tables.
"""

import logging

from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.modeling import freeze_lower_blocks, load_causal_lm, load_tokenizer
from okapi_pipeline.training.reward_model import read_pairs
from okapi_pipeline.training.throughput import speed_arguments
from okapi_pipeline.training.trainer import Stage, run_trainer, trainer_arguments, training_layout

log = logging.getLogger(__name__)


def preference_example(pair: dict) -> dict:
    """A pair in the released key names as trl's prompt / chosen / rejected."""
    return {
        "prompt": alpaca_prompt(pair["instruction"], pair.get("input", "")),
        "chosen": pair["prefered_output"],
        "rejected": pair["rejected_output"],
    }


def train_dpo(sft_dir, pairs_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1) -> dict:
    """DPO from the SFT model on preference pairs; save the policy with a summary."""
    train, held_out = read_pairs(pairs_path, settings)
    log.info("DPO on %d pairs (%d held out) from %s", len(train), len(held_out), pairs_path)

    def build(precision) -> Stage:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        tokenizer = load_tokenizer(sft_dir)
        model = load_causal_lm(sft_dir, tokenizer, precision.train_dtype)
        reference = load_causal_lm(sft_dir, tokenizer, precision.dtype)
        reference.requires_grad_(False)
        top = settings["trainable_top_blocks"]
        trainable = freeze_lower_blocks(model, top, settings["freeze_embeddings"])
        log.info("%d trainable parameters (blocks below the top %d frozen)", trainable, top)
        layout = training_layout("dpo", model, settings, precision)
        args = DPOConfig(
            **trainer_arguments(settings, checkpoint_dir, precision, evaluate=bool(held_out), layout=layout),
            **speed_arguments("dpo", precision, settings, model),
            beta=settings["beta"],
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=args,
            train_dataset=Dataset.from_list([preference_example(p) for p in train]),
            eval_dataset=Dataset.from_list([preference_example(p) for p in held_out]) if held_out else None,
            processing_class=tokenizer,
        )
        return Stage(
            trainer,
            tokenizer,
            trainable,
            summary=lambda trainer: {
                "train_pairs": len(train),
                "held_out_pairs": len(held_out),
                **reward_accuracies(trainer.state.log_history),
            },
        )

    return run_trainer(
        "dpo",
        build,
        inputs=(sft_dir, pairs_path),
        out_dir=out_dir,
        settings=settings,
        checkpoint_dir=checkpoint_dir,
        threads=threads,
    )


def reward_accuracies(history: list[dict]) -> dict:
    """Share of pairs whose implicit reward ranks the chosen response first, over training."""
    return {
        "reward_accuracy": [
            {"step": e["step"], "value": e["rewards/accuracies"]} for e in history if "rewards/accuracies" in e
        ],
        "held_out_reward_accuracy": [
            {"step": e["step"], "value": e["eval_rewards/accuracies"]}
            for e in history
            if "eval_rewards/accuracies" in e
        ],
    }
