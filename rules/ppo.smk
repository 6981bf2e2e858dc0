"""RLHF: PPO from the SFT policy against the reward model (the paper's method)."""


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
        **gpu_rule_resources("train_ppo"),
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
