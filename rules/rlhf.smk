"""RLHF: PPO from the SFT policy against the reward model."""


rule train_ppo:
    """PPO on the translated ppo prompts; only the top policy blocks train."""
    input:
        sft="results/models/{model}/{lang}/sft",
        reward_model="results/models/{model}/{lang}/rm",
        prompts="results/data/{lang}/ppo.jsonl",
    output:
        directory("results/models/{model}/{lang}/rlhf"),
    log:
        "logs/rlhf/{model}/{lang}.log",
    benchmark:
        "benchmarks/rlhf/{model}/{lang}.tsv"
    params:
        settings=config["ppo"],
        checkpoints="results/checkpoints/{model}/{lang}/rlhf",
    threads: 1
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_ppo.py"


rule rlhf:
    """Target: every RLHF (PPO) model."""
    input:
        expand("results/models/{model}/{lang}/rlhf", model=MODELS, lang=LANGUAGES),
