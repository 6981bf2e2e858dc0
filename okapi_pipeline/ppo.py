"""RLHF with PPO (Okapi section 3.3): the SFT policy against the reward model.

trl 1.12's `trl.experimental.ppo` (PPO left trl after 1.12). The value model starts
from the reward model; a frozen copy of the SFT model is the KL reference. Only the
top blocks of the policy and of the value model train, as in the original.

Two pieces of the original trlx setup that trl lacks are added here: the adaptive KL
controller (Ziegler et al. 2019) and reward clipping. trl's PPO can neither save a
resumable checkpoint nor resume; `ResumablePPOTrainer` adds both.
"""

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl.experimental.ppo import PPOTrainer
from trl.experimental.ppo.ppo_trainer import OnlineTrainerState

from okapi_pipeline.jsonl import read_jsonl, write_json
from okapi_pipeline.modeling import (
    checkpoint_step,
    clear_checkpoints,
    fingerprint,
    freeze_lower_blocks,
    is_main_process,
    load_causal_lm,
    load_scorer,
    load_tokenizer,
    prepare_checkpoints,
    run_precision,
    world_size,
    write_training_summary,
)
from okapi_pipeline.template import alpaca_prompt

log = logging.getLogger(__name__)

# What training_summary.json keeps of the per-step PPO metrics.
CURVES = {
    "reward": "objective/scores",
    "rlhf_reward": "objective/rlhf_reward",
    "kl": "objective/kl",
    "kl_coef": "kl_coef",
    "value_loss": "loss/value_avg",
    "entropy": "objective/entropy",
}
CHECKPOINTS_KEPT = 2


def tokenize_prompts(records: list[dict], tokenizer, max_prompt_length: int) -> list[list[int]]:
    """Alpaca prompts as token ids; long ones lose their start, keeping '### Response:'."""
    prompts = []
    for record in records:
        ids = tokenizer(alpaca_prompt(record["instruction"], record.get("input", "")))["input_ids"]
        prompts.append(ids[-max_prompt_length:])
    return prompts


def curve(log_history: list[dict], key: str) -> list[dict]:
    return [{"step": e["step"], "episode": e.get("episode"), "value": e[key]} for e in log_history if key in e]


# ---- the schedule ----------------------------------------------------------------------


def ppo_schedule(settings: dict, prompts: int, devices: int = 1) -> dict:
    """Rounds, prompts and optimizer steps of a PPO run, computed from its settings.

    A round generates `rollout_batch_size` responses (over all processes) with the
    current policy, then makes `num_ppo_epochs` passes over them in minibatches of
    `mini_batch_size`, one optimizer step each. The original (trlx, 7 processes): 128
    rollouts and batches of 2 per process, 4 PPO epochs, 5 rounds, so 896 rollouts
    per round, minibatches of 14 and 5 x 4 x 64 = 1,280 steps on 4,480 prompts.
    `rounds: null` makes one pass over all prompts.
    """
    rollouts, mini = settings["rollout_batch_size"], settings["mini_batch_size"]
    if rollouts % mini:
        raise ValueError(f"ppo.rollout_batch_size {rollouts} is not a multiple of ppo.mini_batch_size {mini}")
    if rollouts % devices or mini % devices:
        raise ValueError(f"ppo.rollout_batch_size {rollouts} and ppo.mini_batch_size {mini} must divide by the "
                         f"{devices} processes (the paper's 896 and 14: 1, 2, 7 or 14 GPUs)")
    rounds = settings["rounds"] or math.ceil(prompts / rollouts)
    return {
        "rounds": rounds,
        "rollouts_per_round": rollouts,
        "prompts": rounds * rollouts,
        "mini_batch_size": mini,
        "optimizer_steps": rounds * settings["num_ppo_epochs"] * (rollouts // mini),
        "rollouts_per_device": rollouts // devices,
    }


# ---- the original's KL control and reward clipping ----------------------------------


def adaptive_kl_coef(kl_coef: float, kl: float, target: float, horizon: int, episodes: int) -> float:
    """One update of Ziegler et al.'s controller (trlx's AdaptiveKLController).

    The coefficient grows when the measured KL is above the target and shrinks when
    below, by at most 20% of episodes / horizon per batch.
    """
    error = min(max(kl / target - 1, -0.2), 0.2)
    return kl_coef * (1 + error * episodes / horizon)


class AdaptiveKLController(TrainerCallback):
    """Updates `args.kl_coef` from each round's KL (summed over the response, averaged
    over the rollouts, as trl logs it). trl reads `args.kl_coef` when it computes a
    round's rewards, so the new value applies from the next round on. Every process sees
    the same gathered KL, so the coefficient stays in step across processes.

    trlx (mid-2023) updated once per minibatch by the per-process batch size, from the
    KL measured at rollout time: over a round that is one update by its per-process
    rollouts (`episodes_per_round`, 128 in the original).
    """

    def __init__(self, target: float, horizon: int, episodes_per_round: int):
        self.target = target
        self.horizon = horizon
        self.episodes_per_round = episodes_per_round

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "objective/kl" in logs:
            state.log_history[-1]["kl_coef"] = args.kl_coef  # the value this round used
            args.kl_coef = adaptive_kl_coef(args.kl_coef, logs["objective/kl"], self.target, self.horizon,
                                            self.episodes_per_round)


def clip_gradients_before_each_step(optimizer, parameters, max_norm: float) -> None:
    """Clip the gradient norm before every optimizer step (trl's PPO loop does not clip;
    the original's DeepSpeed config clipped at 1.0)."""
    parameters = [p for p in parameters if p.requires_grad]

    def clip(*_) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    optimizer.register_step_pre_hook(clip)


class ClippedScore(torch.nn.Module):
    """A reward head whose scores are clipped to [-bound, bound] (trlx's cliprange_reward).

    trl reads the reward at `model.score(hidden states)`, so wrapping the head clips
    every reward PPO sees and nothing else.
    """

    def __init__(self, head: torch.nn.Module, bound: float):
        super().__init__()
        self.head = head
        self.bound = bound

    def forward(self, hidden):
        return self.head(hidden).clamp(-self.bound, self.bound)


# ---- checkpoints ---------------------------------------------------------------------


class _SkipFirstBatches:
    """The dataloader, less the batches a resumed run already used in the current pass."""

    def __init__(self, dataloader, skip: int):
        self.dataloader = dataloader
        self.skip = skip

    def __iter__(self):
        batches = iter(self.dataloader)
        for _ in range(self.skip):
            next(batches)
        self.skip = 0
        yield from batches


class _RestoreProgress(TrainerCallback):
    """trl's train() zeroes the step and episode before `on_train_begin`: put them back."""

    def __init__(self, saved: OnlineTrainerState, max_steps: int):
        self.saved = saved
        self.max_steps = max_steps

    def on_train_begin(self, args, state, control, **kwargs):
        state.global_step = self.saved.global_step
        state.episode = self.saved.episode
        state.log_history = self.saved.log_history
        state.max_steps = self.max_steps


class ResumablePPOTrainer(PPOTrainer):
    """trl's PPOTrainer with checkpoints that a killed run resumes from.

    trl 1.12's checkpoints hold the policy only and its train() always starts at update
    1. Here a checkpoint is accelerate's whole state (policy and value model, optimizer,
    scheduler, random generators) plus the trainer state (step, episode, log history)
    and the KL coefficient. It is written under a temporary name and renamed when
    complete, so a kill during a save leaves the previous checkpoint usable. Resuming
    loads it and lets train() run only the remaining updates.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accelerator.register_for_checkpointing(self.lr_scheduler)

    def _save_checkpoint(self, model, trial):
        if self.state.global_step >= self.state.max_steps:
            return  # the final model is saved next: nothing is left to resume
        root = Path(self.args.output_dir)
        final = root / f"checkpoint-{self.state.global_step}"
        partial = root / f"partial-{final.name}"
        self.accelerator.save_state(str(partial))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.state.save_to_json(str(partial / "trainer_state.json"))
            write_json(partial / "ppo.json", {"kl_coef": self.args.kl_coef})
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            older = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for stale in older[:-CHECKPOINTS_KEPT]:
                shutil.rmtree(stale)
        self.accelerator.wait_for_everyone()

    def train(self, resume_from_checkpoint: str | None = None):
        if resume_from_checkpoint:
            checkpoint = Path(resume_from_checkpoint)
            self.accelerator.load_state(str(checkpoint))
            saved = OnlineTrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
            self.args.kl_coef = json.loads((checkpoint / "ppo.json").read_text())["kl_coef"]
            total = self.args.num_total_batches
            self.args.num_total_batches = total - saved.global_step
            self.dataloader = _SkipFirstBatches(self.dataloader, saved.global_step % len(self.dataloader))
            self.add_callback(_RestoreProgress(saved, total))
        super().train()


# ---- training ----------------------------------------------------------------------------


def train_ppo(sft_dir, reward_model_dir, prompts_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1) -> dict:
    """PPO from the SFT model; save the policy as a plain causal LM with a summary."""
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig

    started = time.time()
    precision = run_precision(threads)
    records = read_jsonl(prompts_path)
    schedule = ppo_schedule(settings, len(records), world_size())
    rollouts_per_device = schedule["rollouts_per_device"]
    log.info("PPO schedule: %s", schedule)
    if len(records) < rollouts_per_device:
        raise ValueError(f"{len(records)} prompts in {prompts_path}, fewer than one rollout batch ({rollouts_per_device})")

    resume = prepare_checkpoints(checkpoint_dir, fingerprint(sft_dir, reward_model_dir, prompts_path, settings))
    # Left padding: generation continues every prompt from its last token.
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    policy = load_causal_lm(sft_dir, tokenizer, precision.train_dtype)
    reference = load_causal_lm(sft_dir, tokenizer, precision.dtype)
    reward_model = load_scorer(reward_model_dir, tokenizer, settings["seed"], precision.dtype)
    value_model = load_scorer(reward_model_dir, tokenizer, settings["seed"], precision.train_dtype)
    if settings["reward_clip"] is not None:
        reward_model.score = ClippedScore(reward_model.score, settings["reward_clip"])
    for frozen in (reference, reward_model):
        frozen.requires_grad_(False)
        frozen.eval()
    top = settings["trainable_top_blocks"]
    trainable = freeze_lower_blocks(policy, top, settings["freeze_embeddings"])
    # The value model is this project's (trlx put a value head on the policy): top blocks only.
    freeze_lower_blocks(value_model, top, freeze_embeddings=True)
    log.info("PPO on %d prompts; %d trainable policy parameters (top %d blocks)", len(records), trainable, top)

    dataset = Dataset.from_dict({"input_ids": tokenize_prompts(records, tokenizer, settings["max_prompt_length"])})
    args = PPOConfig(
        output_dir=str(checkpoint_dir),
        total_episodes=schedule["prompts"],
        num_ppo_epochs=settings["num_ppo_epochs"],
        # One round per trl update; it is cut into minibatches, one optimizer step each
        # (gradient accumulation would merge the minibatches' steps).
        per_device_train_batch_size=rollouts_per_device,
        gradient_accumulation_steps=1,
        num_mini_batches=settings["rollout_batch_size"] // settings["mini_batch_size"],
        # trlx's chunk_size: responses generated and scored at once.
        local_rollout_forward_batch_size=settings["chunk_size"],
        learning_rate=settings["learning_rate"],
        # The original's cosine annealing to eta_min = lr is a constant rate.
        lr_scheduler_type="constant",
        weight_decay=settings["weight_decay"],
        adam_beta1=settings["adam_betas"][0],
        adam_beta2=settings["adam_betas"][1],
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
        save_strategy="steps",
        save_steps=settings["save_steps"],
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        **precision.trainer_arguments(),
    )
    callbacks = []
    if settings["kl_control"] == "adaptive":
        episodes = settings["kl_episodes_per_round"] or settings["rollout_batch_size"]
        callbacks.append(AdaptiveKLController(settings["kl_target"], settings["kl_horizon"], episodes))
    trainer = ResumablePPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
        callbacks=callbacks,
    )
    if settings["max_grad_norm"] is not None and not trainer.is_deepspeed_enabled:
        # Under DeepSpeed its own `gradient_clipping` (accelerate/deepspeed_zero2.yaml) clips.
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
        clip_gradients_before_each_step(optimizer, trainer.model.parameters(), settings["max_grad_norm"])
    trainer.train(resume_from_checkpoint=resume)

    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    history = trainer.state.log_history
    summary = None
    if is_main_process():
        policy.save_pretrained(out_dir)
        load_tokenizer(sft_dir).save_pretrained(out_dir)
        summary = write_training_summary(
            out_dir,
            stage="ppo",
            log_history=[{"step": e["step"], "loss": e["loss/policy_avg"]} for e in history if "loss/policy_avg" in e],
            steps=trainer.state.global_step,
            started=started,
            model=policy,
            trainable=trainable,
            settings=settings,
            precision=precision,
            extra={
                "episodes": trainer.state.episode,
                "schedule": schedule,
                "resumed_from_step": checkpoint_step(resume),
                "final_kl_coef": trainer.args.kl_coef,
                **{name: curve(history, key) for name, key in CURVES.items()},
            },
        )
        clear_checkpoints(checkpoint_dir)
    trainer.accelerator.wait_for_everyone()
    return summary
