"""Base models: fetched from the hub on the login node, or built tiny for the demo."""


rule tokenizer:
    """A byte-level BPE tokenizer trained on the bundled multilingual corpus."""
    input:
        corpus=config["tiny_models"]["corpus"],
    output:
        directory("resources/tokenizer"),
    log:
        "logs/models/tokenizer.log",
    params:
        vocab_size=config["tiny_models"]["vocab_size"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule build_tiny_model:
    """A tiny model from its config, briefly pretrained on the bundled corpus."""
    input:
        tokenizer="resources/tokenizer",
        corpus=config["tiny_models"]["corpus"],
    output:
        directory("resources/models/{model}"),
    wildcard_constraints:
        model=alternation(BUILT_MODELS),
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    params:
        build=model_build_settings,
        pretraining=config["tiny_models"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/build_tiny_model.py"


rule fetch_base_model:
    """Download a base model from the hub (login node: compute nodes have no network)."""
    output:
        directory("resources/models/{model}"),
    wildcard_constraints:
        model=alternation(HUB_MODELS),
    log:
        "logs/models/{model}.log",
    params:
        source=model_hub_source,
    localrule: True
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/fetch_base_model.py"
