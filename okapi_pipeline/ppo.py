"""RLHF with PPO (Okapi section 3.3): the SFT policy against the reward model.

trl 1.12's `trl.experimental.ppo` (PPO left trl after 1.12). The value model starts
from the reward model; a frozen copy of the SFT model is the KL reference. Only the
top blocks of the policy and of the value model train, as in the original.

Differences from the original trlx setup, which trl does not offer: the KL
coefficient is fixed (no adaptive controller with target 6) and rewards are not
clipped at 10.
"""

import logging
import time

from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.modeling import (
    clear_checkpoints,
    freeze_all_but_top_blocks,
    load_causal_lm,
    load_scorer,
    load_tokenizer,
    run_precision,
    world_size,
    write_training_summary,
)
from okapi_pipeline.template import alpaca_prompt

log = logging.getLogger(__name__)

# What training_summary.json keeps of trl's per-step PPO metrics.
CURVES = {
    "reward": "objective/scores",
    "rlhf_reward": "objective/rlhf_reward",
    "kl": "objective/kl",
    "value_loss": "loss/value_avg",
    "entropy": "objective/entropy",
}


def tokenize_prompts(records: list[dict], tokenizer, max_prompt_length: int) -> list[list[int]]:
    """Alpaca prompts as token ids; long ones lose their start, keeping '### Response:'."""
    prompts = []
    for record in records:
        ids = tokenizer(alpaca_prompt(record["instruction"], record.get("input", "")))["input_ids"]
        prompts.append(ids[-max_prompt_length:])
    return prompts


def curve(log_history: list[dict], key: str) -> list[dict]:
    return [{"step": e["step"], "episode": e.get("episode"), "value": e[key]} for e in log_history if key in e]


def train_ppo(sft_dir, reward_model_dir, prompts_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1) -> dict:
    """PPO from the SFT model; save the policy as a plain causal LM with a summary."""
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    started = time.time()
    precision = run_precision(threads)
    records = read_jsonl(prompts_path)
    devices = world_size()
    rollouts_per_device = settings["rollout_batch_size"] // devices
    if settings["rollout_batch_size"] % (settings["mini_batch_size"] * devices):
        raise ValueError("ppo.rollout_batch_size must be a multiple of mini_batch_size x devices")
    if len(records) < rollouts_per_device:
        raise ValueError(f"{len(records)} prompts in {prompts_path}, fewer than one rollout batch ({rollouts_per_device})")

    # Left padding: generation continues every prompt from its last token.
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    policy = load_causal_lm(sft_dir, tokenizer, precision.train_dtype)
    reference = load_causal_lm(sft_dir, tokenizer, precision.dtype)
    reward_model = load_scorer(reward_model_dir, tokenizer, settings["seed"], precision.dtype)
    value_model = load_scorer(reward_model_dir, tokenizer, settings["seed"], precision.train_dtype)
    for frozen in (reference, reward_model):
        frozen.requires_grad_(False)
        frozen.eval()
    top = settings["trainable_top_blocks"]
    trainable = freeze_all_but_top_blocks(policy, top)
    freeze_all_but_top_blocks(value_model, top)
    log.info("PPO on %d prompts; %d trainable policy parameters (top %d blocks)", len(records), trainable, top)

    dataset = Dataset.from_dict({"input_ids": tokenize_prompts(records, tokenizer, settings["max_prompt_length"])})
    args = PPOConfig(
        output_dir=str(checkpoint_dir),
        total_episodes=settings["total_episodes"],
        num_ppo_epochs=settings["num_ppo_epochs"],
        # One rollout batch per device step; it is cut into minibatches, one optimizer
        # step each (gradient accumulation would merge the minibatches' steps).
        per_device_train_batch_size=rollouts_per_device,
        gradient_accumulation_steps=1,
        num_mini_batches=settings["rollout_batch_size"] // settings["mini_batch_size"],
        local_rollout_forward_batch_size=settings["mini_batch_size"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type="constant",
        weight_decay=settings["weight_decay"],
        kl_coef=settings["kl_coef"],
        cliprange=settings["cliprange"],
        cliprange_value=settings["cliprange_value"],
        vf_coef=settings["vf_coef"],
        gamma=settings["gamma"],
        lam=settings["lam"],
        response_length=settings["response_length"],
        temperature=settings["temperature"],
        stop_token="eos",
        num_sample_generations=0,
        seed=settings["seed"],
        save_strategy="no",  # trl's PPO cannot resume from a checkpoint
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        **precision.trainer_arguments(),
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
    )
    trainer.train()

    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    policy.save_pretrained(out_dir)
    load_tokenizer(sft_dir).save_pretrained(out_dir)
    clear_checkpoints(checkpoint_dir)
    history = trainer.state.log_history
    return write_training_summary(
        out_dir,
        stage="ppo",
        log_history=[{"step": e["step"], "loss": e["loss/policy_avg"]} for e in history if "loss/policy_avg" in e],
        steps=trainer.state.global_step,
        started=started,
        model=policy,
        trainable=trainable,
        settings=settings,
        precision=precision,
        extra={"episodes": trainer.state.episode, **{name: curve(history, key) for name, key in CURVES.items()}},
    )
