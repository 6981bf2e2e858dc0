"""Base models: fetched from the hub on the login node, or built tiny for the demo."""


rule tokenizer:
    """A byte-level BPE tokenizer trained on the bundled multilingual corpus."""
    input:
        corpus=config["tiny_models"]["corpus"],
    output:
        directory("resources/tokenizer"),
    log:
        "logs/models/tokenizer.log",
    conda:
        "../envs/train.yaml"
    params:
        vocab_size=config["tiny_models"]["vocab_size"],
    script:
        "../scripts/train_tokenizer.py"


rule build_tiny_model:
    """A tiny model from its config, briefly pretrained on the bundled corpus."""
    input:
        unpack(tiny_model_inputs),
    output:
        directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    benchmark:
        "logs/timing/models/{model}.tsv"
    wildcard_constraints:
        model=alternation(BUILT_MODELS),
    conda:
        "../envs/train.yaml"
    params:
        build=model_build_settings,
        pretraining=config["tiny_models"],
    script:
        "../scripts/build_tiny_model.py"


rule fetch_base_model:
    """Download a base model from the hub (login node: compute nodes have no network)."""
    output:
        directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=alternation(HUB_MODELS),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        source=model_hub_source,
    script:
        "../scripts/fetch_base_model.py"


rule convert_ctranslate2:
    """A translation model converted once for the CTranslate2 engine (`engine: ctranslate2`)."""
    input:
        base_model_of,
    output:
        directory("resources/ctranslate2/{model}"),
    log:
        "logs/models/{model}.ctranslate2.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/convert_ctranslate2.py"
