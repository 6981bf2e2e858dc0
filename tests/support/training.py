"""Stage settings and data builders for the tiny-model training tests (unit and integration layers)."""

import json
import random

import torch
from transformers import AutoModelForCausalLM

SFT_SETTINGS = {
    "report_to": "none",
    "finetuning": "full",
    "epochs": 3,
    "learning_rate": 3e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "adam_betas": [0.9, 0.95],
    "weight_decay": 0.05,
    "max_length": 96,
    "per_device_batch_size": 4,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "held_out_fraction": 0.1,
    "completion_only_loss": False,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}

REWARD_MODEL_SETTINGS = {
    "report_to": "none",
    "epochs": 3,
    "learning_rate": 1e-2,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "weight_decay": 1e-4,
    "max_length": 96,
    "per_device_batch_size": 8,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "trainable_top_blocks": 2,
    "freeze_embeddings": False,
    "held_out_fraction": 0.25,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}

PPO_SETTINGS = {
    "report_to": "none",
    "rounds": 2,
    "num_ppo_epochs": 2,
    "rollout_batch_size": 8,
    "mini_batch_size": 4,
    "advantage_whitening": "round",
    "chunk_size": 4,
    "learning_rate": 1e-3,
    "weight_decay": 1e-6,
    "adam_betas": [0.9, 0.95],
    "max_grad_norm": 1.0,
    "kl_coef": 0.1,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 1.0,
    "gamma": 1.0,
    "lam": 0.95,
    "max_prompt_length": 64,
    "response_length": 8,
    "temperature": 1.0,
    "trainable_top_blocks": 1,
    "freeze_embeddings": False,
    "seed": 0,
    # A short horizon, so that the adaptive coefficient visibly moves in two updates.
    "kl_control": "adaptive",
    "kl_target": 6.0,
    "kl_horizon": 8,
    "kl_episodes_per_round": None,
    "reward_clip": 0.01,
    "save_steps": 1,
    "kernels": "auto",
}

DPO_SETTINGS = {
    "report_to": "none",
    "beta": 0.1,
    "epochs": 2,
    "learning_rate": 1e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "weight_decay": 0.0,
    "max_length": 96,
    "per_device_batch_size": 8,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "trainable_top_blocks": 2,
    "freeze_embeddings": True,
    "held_out_fraction": 0.25,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}

# The input embeddings (and BLOOM's layer norm on them), relative to the backbone.
EMBEDDINGS = ("embed_tokens.", "word_embeddings.", "word_embeddings_layernorm.")

SUMMARY_FIELDS = {"stage", "steps", "loss", "wall_time_s", "trainable_parameters", "total_parameters", "settings"}

QA = [
    ("Con mèo ngồi ở đâu?", "", "Con mèo ngồi trên tấm thảm."),
    ("Thủ đô của Pháp là gì?", "", "Thủ đô của Pháp là Paris."),
    ("Kucing duduk di mana?", "Kucing", "Kucing duduk di atas tikar."),
    ("Apa ibu kota Prancis?", "", "Ibu kota Prancis adalah Paris."),
]


def instruction_records(n: int) -> list[dict]:
    return [
        {"id": f"alpaca-{i:05d}", "instruction": QA[i % 4][0], "input": QA[i % 4][1], "output": QA[i % 4][2]}
        for i in range(n)
    ]


def marker_pairs(prompts: int, per_prompt: int = 3) -> list[dict]:
    """A clearly separable preference: every chosen response ends with the word 'Paris'."""
    rng = random.Random(0)
    words = "con mèo chó nước biển thủ đô kucing anjing air laut tikar".split()

    def sentence():
        return " ".join(rng.choice(words) for _ in range(5))

    return [
        {
            "id": f"rm-{i:05d}",
            "instruction": f"Viết câu số {i}.",
            "input": "",
            "prefered_output": sentence() + " Paris",
            "rejected_output": sentence(),
        }
        for i in range(prompts)
        for _ in range(per_prompt)
    ]


def state(directory, cls=AutoModelForCausalLM, **kwargs) -> dict:
    return cls.from_pretrained(directory, **kwargs).state_dict()


def summary(directory) -> dict:
    return json.loads((directory / "training_summary.json").read_text())


def changed_blocks(before: dict, after: dict, prefix: str) -> set[str]:
    """Names (relative to the backbone prefix) of the parameters that differ."""
    return {
        name[len(prefix) :]
        for name, value in before.items()
        if name.startswith(prefix) and not torch.equal(value, after[prefix + name[len(prefix) :]])
    }
