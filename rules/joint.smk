"""Joint training data (training.scope: joint): every language's records in one file."""


rule joint_data:
    """One split of every language, mixed (training.joint_mix) and shuffled."""
    input:
        unpack(joint_inputs("results/data/{lang}/{split}.jsonl")),
    output:
        "results/data/joint/{split}.jsonl",
    log:
        "logs/joint/data/{split}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        mix=config["training"]["joint_mix"],
        seed=config["training"]["seed"],
    script:
        "../scripts/joint_data.py"


rule joint_pairs:
    """Every language's preference pairs of one responder, mixed and shuffled."""
    input:
        unpack(joint_inputs("results/rankings/{model}/{lang}/pairs.jsonl")),
    output:
        "results/rankings/{model}/joint/pairs.jsonl",
    log:
        "logs/joint/pairs/{model}.log",
    wildcard_constraints:
        # A responding model, or the released pairs.
        model=alternation([*config["base_models"], RELEASE_PAIRS]),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        mix=config["training"]["joint_mix"],
        seed=config["training"]["seed"],
    script:
        "../scripts/joint_data.py"
