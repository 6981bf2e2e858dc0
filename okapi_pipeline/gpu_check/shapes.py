"""What is checked: the models of each size, the stages, and each size's limits."""

import os

# Real shapes. Models are built with the real vocabulary size: the demo tokenizer uses
# only its first ids, but the embedding and output layers (1B of BLOOM-7B1's 7B
# parameters) cost what they cost in the real run.
SHAPES = {
    "1b": {
        # TinyLlama-like width with LLaMA's head size of 128: 1.06B parameters.
        "llama-1b": {
            "architecture": "llama",
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_layers": 18,
            "num_heads": 16,
            "vocab_size": 32000,
        },
        # bigscience/bloom-1b1: 1.07B parameters.
        "bloom-1b1": {
            "architecture": "bloom",
            "hidden_size": 1536,
            "num_layers": 24,
            "num_heads": 16,
            "vocab_size": 250880,
        },
    },
    "7b": {
        "llama-7b": {
            "architecture": "llama",
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_layers": 32,
            "num_heads": 32,
            "vocab_size": 32000,
        },
        "bloom-7b1": {
            "architecture": "bloom",
            "hidden_size": 4096,
            "num_layers": 30,
            "num_heads": 32,
            "vocab_size": 250880,
        },
        # Today's base models (configs/modern.yaml), from their config.json: grouped-query
        # attention and output layers not tied to the embeddings. `--models
        # qwen2.5-7b,llama-3.1-8b` for these alone. Built with the demo tokenizer and the
        # tiny models' position table; rope settings do not change the cost.
        # Qwen/Qwen2.5-7B: 7.62B parameters.
        "qwen2.5-7b": {
            "architecture": "qwen2",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_layers": 28,
            "num_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
        },
        # meta-llama/Llama-3.1-8B: 8.03B parameters.
        "llama-3.1-8b": {
            "architecture": "llama",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_layers": 32,
            "num_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
        },
    },
}
SIZES = ("tiny", "1b", "7b")
MODEL_STAGES = ("sft", "reward_model", "ppo", "dpo", "evaluate_hf", "evaluate_vllm", "generate", "sft_multi_gpu")
TRAINING_STAGES = ("sft", "reward_model", "ppo", "dpo")
# Seconds per stage: generous for the size, so that only a real hang reaches them.
TIMEOUTS = {
    "tiny": {"default": 300},
    "1b": {"default": 240, "ppo": 360, "evaluate_vllm": 360, "sft_multi_gpu": 360},
    "7b": {"default": 600},
}
# Optimizer steps of SFT, reward model and DPO; PPO rounds (a round: rollouts, then
# num_ppo_epochs passes over them in minibatches).
STEPS = {"tiny": 3, "1b": 3, "7b": 3}
PPO_ROUNDS = {"tiny": 1, "1b": 1, "7b": 1}
# The processes the configured PPO batches are shared by: the original ran PPO in 7
# processes (configs/paper.yaml: 896 rollouts and minibatches of 7 = 7 x 128 and 7 x 1),
# and a one-GPU stage runs one process's share, so each GPU sees the original's load.
PPO_PROCESSES = {"tiny": 1, "1b": 7, "7b": 7}
# Prompts of the generation stage: enough for the memory-sized batches of a GPU to fill
# (a 7B model on 80 GB takes about 48 prompts a batch), so the rate is the stage's own.
GENERATION_PROMPTS = {"tiny": 8, "1b": 256, "7b": 128}
# torch threads per stage: one on a small shared CPU (oversubscribed threads only wait),
# all cores beside a GPU.
THREADS = {"tiny": 1, "1b": os.cpu_count(), "7b": os.cpu_count()}


def model_builds(size: str, config: dict) -> dict:
    """Model name -> build settings: the demo's base models for --tiny, else SHAPES."""
    if size == "tiny":
        return {name: entry["build"] for name, entry in config["base_models"].items() if "build" in entry}
    return SHAPES[size]


def chosen(size: str, builds: dict, models: str | None, stages: str | None) -> tuple[dict, list[str]]:
    """The models and stages asked for (comma-separated; all by default)."""
    wanted = stages.split(",") if stages else list(MODEL_STAGES)
    unknown = set(wanted) - set(MODEL_STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown))} (known: {', '.join(MODEL_STAGES)})")
    names = models.split(",") if models else list(builds)
    missing = set(names) - set(builds)
    if missing:
        raise SystemExit(
            f"unknown model(s) for --size {size}: {', '.join(sorted(missing))} (known: {', '.join(builds)})"
        )
    return {name: builds[name] for name in names}, wanted
