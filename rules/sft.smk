"""Supervised fine-tuning on the translated instructions (Alpaca template)."""


rule train_sft:
    """One SFT model per (base model, language), or per base model on every language (joint)."""
    input:
        base=base_model_of,
        data="results/data/{lang}/sft.jsonl",
    output:
        directory("results/models/{model}/{lang}/sft"),
    log:
        "logs/sft/{model}/{lang}.log",
    benchmark:
        "logs/timing/sft/{model}/{lang}.tsv"
    wildcard_constraints:
        lang=LANGUAGE_OR_JOINT,
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **gpu_rule_resources("train_sft"),
    params:
        settings=training_settings("sft"),
        checkpoints="results/checkpoints/{model}/{lang}/sft",
        card=model_card_facts("sft"),
    script:
        "../scripts/train_sft.py"


rule sft:
    """Target: every SFT model."""
    input:
        expand("results/models/{model}/{lang}/sft", model=MODELS, lang=TRAINING_UNITS),
