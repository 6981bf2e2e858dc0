"""RLHF with PPO (Okapi section 3.3): the SFT policy against the reward model.

trl 1.12's `trl.experimental.ppo` (PPO left trl after 1.12). The value model starts
from the reward model; a frozen copy of the SFT model is the KL reference. Only the
top blocks of the policy and of the value model train, as in the original.

Two pieces of the original trlx setup that trl lacks are added here: the adaptive KL
controller (Ziegler et al. 2019) and reward clipping. trl's PPO can neither save a
resumable checkpoint nor resume; `ppo_checkpoints.ResumablePPOTrainer` adds both.
"""

import logging
import math
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.model_card import add_chat_template
from okapi_pipeline.training.modeling import (
    freeze_lower_blocks,
    load_causal_lm,
    load_scorer,
    load_tokenizer,
)
from okapi_pipeline.training.ppo_checkpoints import ResumablePPOTrainer
from okapi_pipeline.training.throughput import speed_arguments
from okapi_pipeline.training.trainer import Stage, run_trainer, world_size

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
    `mini_batch_size`, one optimizer step each. The original (trlx under DeepSpeed, 7
    processes): 128 rollouts per process, 4 PPO epochs, 5 rounds, and an optimizer step
    after every micro-step of one rollout per process, so 896 rollouts per round,
    minibatches of 7 and 5 x 4 x 128 = 2,560 steps on 4,480 prompts.
    `rounds: null` makes one pass over all prompts.
    """
    rollouts, mini = settings["rollout_batch_size"], settings["mini_batch_size"]
    if rollouts % mini:
        raise ValueError(f"ppo.rollout_batch_size {rollouts} is not a multiple of ppo.mini_batch_size {mini}")
    if rollouts % devices or mini % devices:
        raise ValueError(
            f"ppo.rollout_batch_size {rollouts} and ppo.mini_batch_size {mini} must divide by the "
            f"{devices} processes (the paper's 896 and 7: 1 or 7 GPUs)"
        )
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
            args.kl_coef = adaptive_kl_coef(
                args.kl_coef, logs["objective/kl"], self.target, self.horizon, self.episodes_per_round
            )


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


# ---- the scope of the advantage whitening --------------------------------------------------


def whiten_in_groups(values: torch.Tensor, mask: torch.Tensor, group_size: int, all_reduce=None) -> torch.Tensor:
    """Advantages (rollouts x tokens) whitened in groups of `group_size` consecutive rollouts:
    each group's tokens that `mask` marks get mean 0 and variance 1 (trlx's `whiten`:
    (x - mean) / sqrt(var + 1e-8), the variance over all the group's tokens).

    `all_reduce` sums a tensor over the processes in place (None: one process), so that
    group g is made of the g-th group of every process, as a trlx minibatch was.
    """
    rollouts = values.shape[0]
    if rollouts % group_size:
        raise ValueError(f"{rollouts} rollouts do not divide into groups of {group_size}")
    shape = (rollouts // group_size, group_size * values.shape[1])
    grouped, weights = values.reshape(shape), mask.reshape(shape).to(values.dtype)
    totals = torch.stack([(grouped * weights).sum(1), weights.sum(1)])
    if all_reduce is not None:
        all_reduce(totals)
    mean = (totals[0] / totals[1]).unsqueeze(1)
    squares = (((grouped - mean) ** 2) * weights).sum(1)
    if all_reduce is not None:
        all_reduce(squares)
    variance = (squares / totals[1]).unsqueeze(1)
    return ((grouped - mean) * torch.rsqrt(variance + 1e-8)).reshape(values.shape)


def _sum_over_processes():
    """In-place sum over the processes of `accelerate launch` (None when there is one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.all_reduce
    return None


@contextmanager
def advantages_whitened_in_groups(group_size: int):
    """Within the block, trl's PPO whitens each round's advantages in groups of
    `group_size` rollouts per process (see `whiten_in_groups`), not over the whole round.

    trl computes a round's advantages, whitens them with `masked_whiten(advantages, mask)`
    and then cuts minibatches; that one call is redirected here (its reward whitening,
    `shift_mean=False`, is left as it is). Yields a counter of the redirected calls.
    """
    from trl.experimental.ppo import ppo_trainer

    original = ppo_trainer.masked_whiten
    calls = {"advantages": 0}

    def whiten(values, mask, shift_mean=True):
        if not shift_mean:
            return original(values, mask, shift_mean)
        calls["advantages"] += 1
        return whiten_in_groups(values, mask, group_size, _sum_over_processes())

    ppo_trainer.masked_whiten = whiten
    try:
        yield calls
    finally:
        ppo_trainer.masked_whiten = original


class ScopedWhiteningPPOTrainer(ResumablePPOTrainer):
    """The resumable PPO trainer with the scope of its advantage whitening from config:
    `round` (trl: every rollout of the round on a process) or `minibatch` (trlx: each
    minibatch's rollouts across processes, here groups of that size)."""

    def __init__(self, *args, advantage_whitening: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.advantage_whitening = advantage_whitening

    def train(self, resume_from_checkpoint: str | None = None):
        if self.advantage_whitening == "round":
            return super().train(resume_from_checkpoint)
        with advantages_whitened_in_groups(self.args.local_mini_batch_size) as calls:
            result = super().train(resume_from_checkpoint)
        if self.state.global_step and not calls["advantages"]:
            # A trl that whitens some other way would silently whiten over the round.
            raise RuntimeError(
                "trl's PPO did not whiten its advantages through masked_whiten: minibatch scope not applied"
            )
        return result


# ---- training ----------------------------------------------------------------------------


def train_ppo(
    sft_dir, reward_model_dir, prompts_path, out_dir, settings: dict, checkpoint_dir, threads: int = 1
) -> dict:
    """PPO from the SFT model; save the policy as a plain causal LM with a summary."""
    records = read_jsonl(prompts_path)
    schedule = ppo_schedule(settings, len(records), world_size())
    log.info("PPO schedule: %s", schedule)
    if len(records) < schedule["rollouts_per_device"]:
        raise ValueError(
            f"{len(records)} prompts in {prompts_path}, fewer than one rollout batch "
            f"({schedule['rollouts_per_device']})"
        )

    def build(precision) -> Stage:
        # Left padding: generation continues every prompt from its last token.
        tokenizer = load_tokenizer(sft_dir, padding_side="left")
        policy, trainable, models = ppo_models(sft_dir, reward_model_dir, tokenizer, settings, precision)
        log.info(
            "PPO on %d prompts; %d trainable policy parameters (top %d blocks)",
            len(records),
            trainable,
            settings["trainable_top_blocks"],
        )
        trainer = ScopedWhiteningPPOTrainer(
            advantage_whitening=settings["advantage_whitening"],
            args=ppo_config(settings, schedule, checkpoint_dir, precision),
            processing_class=tokenizer,
            model=policy,
            train_dataset=prompt_dataset(records, tokenizer, settings["max_prompt_length"]),
            callbacks=kl_callbacks(settings),
            **models,
        )
        if settings["max_grad_norm"] is not None and not trainer.is_deepspeed_enabled:
            # Under DeepSpeed its own `gradient_clipping` (accelerate/deepspeed_zero2.yaml) clips.
            optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
            clip_gradients_before_each_step(optimizer, trainer.model.parameters(), settings["max_grad_norm"])
        # The saved tokenizer pads on the right, as every other stage's.
        return Stage(
            trainer,
            load_tokenizer(sft_dir),
            trainable,
            summary=lambda trainer: {
                "episodes": trainer.state.episode,
                "schedule": schedule,
                "final_kl_coef": trainer.args.kl_coef,
                **{name: curve(trainer.state.log_history, key) for name, key in CURVES.items()},
            },
            save=save_policy,
            loss_key="loss/policy_avg",
        )

    return run_trainer(
        "ppo",
        build,
        inputs=(sft_dir, reward_model_dir, prompts_path),
        out_dir=out_dir,
        settings=settings,
        checkpoint_dir=checkpoint_dir,
        threads=threads,
    )


def ppo_models(sft_dir, reward_model_dir, tokenizer, settings: dict, precision):
    """(policy, its trainable parameters, the other models as PPOTrainer keywords).

    The value model is this project's (trlx put a value head on the policy): top blocks only.
    """
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
    freeze_lower_blocks(value_model, top, freeze_embeddings=True)
    return policy, trainable, {"ref_model": reference, "reward_model": reward_model, "value_model": value_model}


def prompt_dataset(records: list[dict], tokenizer, max_prompt_length: int):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": tokenize_prompts(records, tokenizer, max_prompt_length)})


def kl_callbacks(settings: dict) -> list:
    if settings["kl_control"] != "adaptive":
        return []
    episodes = settings["kl_episodes_per_round"] or settings["rollout_batch_size"]
    return [AdaptiveKLController(settings["kl_target"], settings["kl_horizon"], episodes)]


def ppo_config(settings: dict, schedule: dict, checkpoint_dir, precision):
    from trl.experimental.ppo import PPOConfig

    return PPOConfig(
        output_dir=str(checkpoint_dir),
        total_episodes=schedule["prompts"],
        num_ppo_epochs=settings["num_ppo_epochs"],
        # One round per trl update; it is cut into minibatches, one optimizer step each
        # (gradient accumulation would merge the minibatches' steps).
        per_device_train_batch_size=schedule["rollouts_per_device"],
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
        report_to=settings["report_to"],
        disable_tqdm=True,
        gradient_checkpointing=False,
        **precision.trainer_arguments(),
        **speed_arguments("ppo", precision, settings),
    )


def save_policy(trainer, out_dir, tokenizer):
    """Save the policy alone, as a plain causal LM (the value model is dropped); return it.

    DeepSpeed ZeRO-2 shards optimizer states, not weights: each process holds the whole
    policy and the main process writes it.
    """
    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    if trainer.accelerator.is_main_process:
        policy.save_pretrained(out_dir)
        add_chat_template(tokenizer)
        tokenizer.save_pretrained(out_dir)
    trainer.accelerator.wait_for_everyone()
    return policy
