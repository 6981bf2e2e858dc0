"""Reward model: the SFT model with a one-logit head, trained on preference pairs."""


rule train_reward_model:
    """One reward model per (base model, language) or joint; only the top blocks train."""
    input:
        sft="results/models/{model}/{lang}/sft",
        pairs=preference_pairs_for,
    output:
        directory("results/models/{model}/{lang}/rm"),
    log:
        "logs/reward_model/{model}/{lang}.log",
    benchmark:
        "logs/timing/reward_model/{model}/{lang}.tsv"
    wildcard_constraints:
        lang=LANGUAGE_OR_JOINT,
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **gpu_rule_resources("train_reward_model"),
    params:
        settings=training_settings("reward_model"),
        checkpoints="results/checkpoints/{model}/{lang}/rm",
        card=model_card_facts("reward_model"),
    script:
        "../scripts/train_reward_model.py"


rule reward_models:
    """Target: every reward model."""
    input:
        expand("results/models/{model}/{lang}/rm", model=MODELS, lang=TRAINING_UNITS),
