"""English instructions: Alpaca-format source, self-instruct, split by use, shards."""


rule load_instructions:
    """The English Alpaca-format records from the configured source."""
    output:
        "results/data/en/instructions.jsonl",
    log:
        "logs/instructions/load.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        source=config["instructions"]["source"],
        limit=config["instructions"]["limit"],
    script:
        "../scripts/load_instructions.py"


rule fetch_seed_tasks:
    """The seed tasks from their URL (Alpaca's 175 in the paper), checked against the SHA-256."""
    output:
        "resources/self_instruct/seed_tasks.jsonl",
    log:
        "logs/instructions/fetch_seed_tasks.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        url=config["self_instruct"]["seed_tasks"],
        sha256=config["self_instruct"]["seed_tasks_sha256"],
    script:
        "../scripts/fetch_seed_tasks.py"


rule self_instruct:
    """New English instructions from seed tasks (Self-Instruct with the Alpaca filters)."""
    input:
        unpack(self_instruct_inputs),
    output:
        instructions="results/data/en/self_instruct.jsonl",
        report="results/data/en/self_instruct.report.json",
    log:
        "logs/instructions/self_instruct.log",
    benchmark:
        "logs/timing/instructions/self_instruct.tsv"
    localrule: llm_on_login_node("self_instruct")
    conda:
        "../envs/data.yaml"
    resources:
        **llm_job_resources("self_instruct", "self_instruct"),
    params:
        llm=llm_answer_params("self_instruct"),
        target_count=config["self_instruct"]["count"],
        max_attempts=config["self_instruct"]["max_attempts"],
        tasks_per_request=config["self_instruct"]["tasks_per_request"],
        rouge_l_threshold=config["self_instruct"]["rouge_l_threshold"],
        seed=config["self_instruct"]["seed"],
        cache_name="self_instruct",
    script:
        "../scripts/self_instruct.py"


rule split_instructions:
    """The sft / rm / ppo sets made here, each from its configured sources, cut into shards."""
    input:
        unpack(split_sources),
    output:
        splits=expand("results/data/en/{split}.jsonl", split=TRANSLATED_SPLITS),
        shards=all_english_shards(),
    log:
        "logs/instructions/split.log",
    conda:
        "../envs/data.yaml"
    params:
        plan=split_plan(config),
        seed=config["split"]["seed"],
        items_per_shard=config["translation"]["items_per_shard"],
    script:
        "../scripts/split_instructions.py"


rule instructions:
    """Target: the English data, split and sharded."""
    input:
        rules.split_instructions.output,
