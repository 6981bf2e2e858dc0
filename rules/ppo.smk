"""RLHF: PPO from the SFT policy against the reward model; DPO (beyond the paper) on the pairs."""


rule train_ppo:
    """PPO on the translated ppo prompts; only the top policy blocks train."""
    input:
        sft="results/models/{model}/{lang}/sft",
        reward_model="results/models/{model}/{lang}/rm",
        prompts="results/data/{lang}/ppo.jsonl",
    output:
        directory("results/models/{model}/{lang}/ppo"),
    log:
        "logs/ppo/{model}/{lang}.log",
    benchmark:
        "logs/timing/ppo/{model}/{lang}.tsv"
    wildcard_constraints:
        lang=LANGUAGE_OR_JOINT,
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **gpu_resources("ppo"),
    params:
        settings=training_settings("ppo"),
        checkpoints="results/checkpoints/{model}/{lang}/ppo",
        card=model_card_facts("ppo"),
    script:
        "../scripts/train_ppo.py"


rule rlhf:
    """Target: every preference-tuned model (each method of rlhf.methods)."""
    input:
        expand(
            "results/models/{model}/{lang}/{method}",
            model=MODELS,
            lang=TRAINING_UNITS,
            method=config["rlhf"]["methods"],
        ),


rule train_dpo:
    """DPO from the SFT model on the same preference pairs as the reward model."""
    input:
        sft="results/models/{model}/{lang}/sft",
        pairs=preference_pairs_for,
    output:
        directory("results/models/{model}/{lang}/dpo"),
    log:
        "logs/dpo/{model}/{lang}.log",
    benchmark:
        "logs/timing/dpo/{model}/{lang}.tsv"
    wildcard_constraints:
        lang=LANGUAGE_OR_JOINT,
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **gpu_resources("dpo"),
    params:
        settings=training_settings("dpo"),
        checkpoints="results/checkpoints/{model}/{lang}/dpo",
        card=model_card_facts("dpo"),
    script:
        "../scripts/train_dpo.py"


rule dpo:
    """Target: every DPO model."""
    input:
        expand("results/models/{model}/{lang}/dpo", model=MODELS, lang=TRAINING_UNITS),
