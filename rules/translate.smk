"""Translation of every English set into every language, sharded, gathered, checked."""


rule translate_shard:
    """Translate one shard of one split into one language through the LLM layer."""
    input:
        unpack(translation_inputs),
    output:
        translated="results/data/{lang}/{split}/shards/{shard}.jsonl",
        rejects="results/data/{lang}/{split}/shards/{shard}.rejects.jsonl",
        report="results/data/{lang}/{split}/shards/{shard}.report.json",
    log:
        "logs/translate/{lang}/{split}/{shard}.log",
    benchmark:
        "logs/timing/translate/{lang}/{split}/{shard}.tsv"
    wildcard_constraints:
        lang=alternation(TRANSLATION_TARGETS),
        split=alternation(TRANSLATED_SPLITS),
    group:
        shard_group("translation", "translate")
    localrule: llm_on_login_node("translation")
    conda:
        "../envs/data.yaml"
    resources:
        **llm_job_resources("translate_shard", "translation"),
    params:
        llm=llm_answer_params("translation"),
        cache_name="translation/{lang}/{split}/{shard}",
    script:
        "../scripts/translate_shard.py"


rule gather_translations:
    """All shards of one split in one language, in order."""
    input:
        translated_shards,
    output:
        "results/data/{lang}/{split}.jsonl",
    log:
        "logs/translate/{lang}/{split}.gather.log",
    wildcard_constraints:
        lang=alternation(TRANSLATION_TARGETS),
        split=alternation(TRANSLATED_SPLITS),
    localrule: True
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/gather_jsonl.py"


rule translation_qa:
    """Per-language QA of the translated data: counts, rejects, untranslated outputs."""
    input:
        english=expand("results/data/en/{split}.jsonl", split=TRANSLATED_SPLITS),
        translated=expand(
            "results/data/{{lang}}/{split}.jsonl", split=TRANSLATED_SPLITS
        ),
        reports=translation_reports,
    output:
        report(
            "results/qa/{lang}.json",
            caption="../report/translation_qa.rst",
            category="Translation QA",
        ),
    log:
        "logs/translate/{lang}/qa.log",
    wildcard_constraints:
        lang=alternation(TRANSLATION_TARGETS),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        splits=TRANSLATED_SPLITS,
        reports=translation_reports_by_split,
    script:
        "../scripts/translation_qa.py"


rule translations:
    """Target: every split made here translated into every language, with its QA report
    (none when every split is the released data; en's splits are the English ones)."""
    input:
        expand(
            "results/data/{lang}/{split}.jsonl",
            lang=LANGUAGES,
            split=TRANSLATED_SPLITS,
        ),
        expand(
            "results/qa/{lang}.json",
            lang=TRANSLATION_TARGETS if TRANSLATED_SPLITS else [],
        ),
