"""The released Okapi data as the source of a split: fetched, checked, converted."""


rule fetch_okapi_release:
    """One released file from the LFS host (or a local folder), kept only if its size and SHA-256 are the pointer's."""
    output:
        "resources/okapi_release/{dataset}/{lang}.json",
    log:
        "logs/okapi_release/{dataset}/{lang}.fetch.log",
    wildcard_constraints:
        dataset=alternation(DATASETS.values()),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        release=okapi_release_source,
    script:
        "../scripts/fetch_okapi_release.py"


rule okapi_release_data:
    """A language's released SFT records or PPO prompts, in the pipeline's format."""
    input:
        okapi_release_file,
    output:
        "results/data/{lang}/{split}.jsonl",
    log:
        "logs/okapi_release/{lang}/{split}.log",
    wildcard_constraints:
        split=alternation([split for split in RELEASED_SPLITS if split != "rm"]),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        split="{split}",
    script:
        "../scripts/convert_okapi_release.py"


rule okapi_release_pairs:
    """A language's released preference pairs, which every model's reward model (and DPO) learns from."""
    input:
        f"resources/okapi_release/{DATASETS['rm']}/{{lang}}.json",
    output:
        f"results/rankings/{RELEASE_PAIRS}/{{lang}}/pairs.jsonl",
    log:
        "logs/okapi_release/{lang}/pairs.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        split="rm",
    script:
        "../scripts/convert_okapi_release.py"


rule okapi_release:
    """Target: the released data of every released split, converted, in every language."""
    input:
        released_data(),
