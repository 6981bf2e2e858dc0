"""English in the plan: a dry run with English plans no translation for it and trains and
evaluates it."""

from tests.support.workflow import copy_workflow, planned_jobs, snakemake

# Jobs that translate into a language or back from it: none of them for English.
TRANSLATION_JOBS = {
    "translate_shard",
    "gather_translations",
    "translation_qa",
    "back_translate_shard",
    "translate_benchmark",
}


def test_a_dry_run_with_english_plans_no_translation_for_it_and_trains_and_evaluates_it(tmp_path):
    workdir = copy_workflow(tmp_path)
    # Translated ARC and a back-translation job of its own: every translation path is planned.
    (workdir / "english.yaml").write_text("languages: [en, vi]\nback_translation:\n  llm: {temperature: 0.5}\n")
    result = snakemake(
        workdir, "-n", "--cores", "2", "--configfile", ".test/config_translated_benchmarks.yaml", "english.yaml"
    )
    jobs = planned_jobs(result.stdout + result.stderr)
    rules_for = {lang: {rule for rule, wildcards in jobs if ("lang", lang) in wildcards} for lang in ("en", "vi")}
    assert TRANSLATION_JOBS <= rules_for["vi"]
    assert not TRANSLATION_JOBS & rules_for["en"]
    assert {
        "train_sft",
        "generate_responses",
        "rank_shard",
        "train_reward_model",
        "train_ppo",
        "evaluate",
    } <= rules_for["en"]
    # English ARC is the English files the other languages are translated from.
    assert ("english_benchmark_data", (("bench", "arc"), ("lang", "en"))) in jobs
