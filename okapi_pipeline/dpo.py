"""DPO (beyond the paper): the SFT model trained directly on the preference pairs.

Direct preference optimisation (Rafailov et al. 2023) needs no reward model: the
policy learns from the same (chosen, rejected) pairs the reward model learns from,
against a frozen copy of the SFT model. Only the top blocks train, as in PPO, so the
two methods change the same weights and compare on equal terms in the tables.
"""

import logging
import time

from okapi_pipeline.modeling import (
    checkpoint_step,
    clear_checkpoints,
    fingerprint,
    freeze_lower_blocks,
    is_main_process,
    load_causal_lm,
    load_tokenizer,
    prepare_checkpoints,
    run_precision,
    save_trained_model,
    trainer_arguments,
    write_training_summary,
)
from okapi_pipeline.reward_model import read_pairs
from okapi_pipeline.template import alpaca_prompt

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
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    started = time.time()
    precision = run_precision(threads)
    train, held_out = read_pairs(pairs_path, settings)
    log.info("DPO on %d pairs (%d held out) from %s", len(train), len(held_out), pairs_path)

    resume = prepare_checkpoints(checkpoint_dir, fingerprint(sft_dir, pairs_path, settings))
    tokenizer = load_tokenizer(sft_dir)
    model = load_causal_lm(sft_dir, tokenizer, precision.train_dtype)
    reference = load_causal_lm(sft_dir, tokenizer, precision.dtype)
    reference.requires_grad_(False)
    trainable = freeze_lower_blocks(model, settings["trainable_top_blocks"], settings["freeze_embeddings"])
    log.info("%d trainable parameters (blocks below the top %d frozen)", trainable, settings["trainable_top_blocks"])

    args = DPOConfig(
        **trainer_arguments(settings, checkpoint_dir, precision, evaluate=bool(held_out)),
        beta=settings["beta"],
        gradient_checkpointing=False,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list([preference_example(p) for p in train]),
        eval_dataset=Dataset.from_list([preference_example(p) for p in held_out]) if held_out else None,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)

    model = save_trained_model(trainer, out_dir, tokenizer)
    if not is_main_process():
        return None
    history = trainer.state.log_history
    summary = write_training_summary(
        out_dir,
        stage="dpo",
        log_history=history,
        steps=trainer.state.global_step,
        started=started,
        model=model,
        trainable=trainable,
        settings=settings,
        precision=precision,
        extra={
            "train_pairs": len(train),
            "held_out_pairs": len(held_out),
            "resumed_from_step": checkpoint_step(resume),
            # Share of pairs whose implicit reward ranks the chosen response first.
            "reward_accuracy": [
                {"step": e["step"], "value": e["rewards/accuracies"]} for e in history if "rewards/accuracies" in e],
            "held_out_reward_accuracy": [
                {"step": e["step"], "value": e["eval_rewards/accuracies"]}
                for e in history if "eval_rewards/accuracies" in e],
        },
    )
    clear_checkpoints(checkpoint_dir)
    return summary
