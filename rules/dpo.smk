"""DPO (beyond the paper): from the SFT model on the reward model's preference pairs."""


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
        **gpu_rule_resources("train_dpo"),
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
