"""The arithmetic of the check: step times, rates, model FLOPs utilisation, dtypes."""

import statistics

from okapi_pipeline.cluster.gpu_jobs import peak_tflops

# The stages that train on tokens of their own data (PPO's rounds are mostly generation).
UTILISATION_STAGES = ("sft", "sft_multi_gpu", "reward_model", "dpo")


def training_flops_per_token(stage: str, parameters: int, trainable: int) -> int:
    """Model FLOPs a training step spends on one token: the forward (2 x parameters), the
    backward through the activations (2 x parameters: the gradient reaches the embeddings,
    which train in the paper config) and the weight gradients of what trains (2 x trainable
    parameters); 6 x parameters when everything trains (SFT). DPO adds its frozen reference
    model's forward (2 x parameters, a third more for a fully trained model). A token of a
    reward model or DPO is one of a pair's chosen or rejected sequence. Attention scores
    are left out, as in the usual 6 x parameters."""
    flops = 4 * parameters + 2 * trainable
    return flops + 2 * parameters if stage == "dpo" else flops


def model_flops_utilisation(flops_per_token: int, tokens_per_s: float, device_name: str, gpus: int) -> float | None:
    """flops_per_token x tokens/s over the devices' bf16 peak (None for a device without one)."""
    peak = peak_tflops(device_name)
    if not (peak and flops_per_token and tokens_per_s):
        return None
    return flops_per_token * tokens_per_s / (peak * 1e12 * gpus)


def add_utilisation(stages: list[dict], device: dict) -> None:
    """FLOPs per token and MFU on each stage of UTILISATION_STAGES that ran."""
    for stage in stages:
        if stage["stage"] in UTILISATION_STAGES and stage["status"] == "ok":
            flops = training_flops_per_token(stage["stage"], stage["parameters"], stage["trainable_parameters"])
            stage["flops_per_token"] = flops
            stage["mfu"] = model_flops_utilisation(
                flops, stage.get("tokens_per_s"), (device.get("names") or [None])[0], stage.get("processes", 1)
            )


def step_timing(begin: float, marks: list[float], tokens: float) -> dict:
    """Step times from the clock at the start of training and at the end of each step.

    The step time is the median step after the first (which pays for warm-up); tokens/s
    is a step's share of `tokens` over it.
    """
    if not marks:
        raise RuntimeError("the trainer ran no optimizer step")
    steps = [b - a for a, b in zip([begin, *marks], marks)]
    typical = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    per_step = tokens / len(steps)
    return {
        "step_time_s": typical,
        "first_step_s": steps[0],
        "timed_steps": len(steps),
        "train_loop_s": marks[-1] - begin,
        "tokens_per_step": per_step,
        "tokens_per_s": per_step / typical,
    }


def ppo_optimizer_steps(settings: dict) -> int:
    """Optimizer steps in one PPO round: each PPO epoch passes over the rollouts in minibatches."""
    return settings["num_ppo_epochs"] * (settings["rollout_batch_size"] // settings["mini_batch_size"])


def single_device_measures(stage: str, settings: dict, timer, generation, tokens: int) -> dict:
    """Step times and rates from the instruments (a StepTimer and a GenerationCounter);
    `tokens` is what the data were built to hold."""
    measures = {}
    if stage == "ppo":
        # A PPO "step" is a round: rollouts, then the PPO epochs' optimizer steps over them.
        tokens = generation.prompt_tokens + generation.new_tokens
        steps = ppo_optimizer_steps(settings)
        measures.update(
            generation_s=round(generation.seconds, 2),
            optimizer_steps_per_round=steps,
            rollout_dtype=",".join(sorted(timer.dtypes["no_grad"])) or None,
            note=f"step = 1 round: {settings['rollout_batch_size']} rollouts, {steps} optimizer steps; "
            f"generation {generation.seconds:.1f} s",
        )
    elif stage == "sft" and timer.num_tokens:
        tokens = timer.num_tokens  # trl's own count: padding excluded
    return {**measures, "tokens": tokens, **timer.timing(tokens)}


def dtype_problems(what: str, dtype: str | None, device: dict) -> list[str]:
    """bf16 exactly where the GPU supports it, float32 elsewhere."""
    expected = "bfloat16" if device.get("gpus") and device.get("bf16") else "float32"
    return [] if dtype == expected else [f"{what} ran in {dtype}, expected {expected}"]
