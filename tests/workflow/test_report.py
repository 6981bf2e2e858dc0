"""Evaluation-only runs, translated benchmarks and the report's outputs: planned, and the
.test configs of the first two run for real."""

import json

import pandas as pd
import pytest
import yaml

from okapi_pipeline.config import BENCHMARKS
from tests.support.workflow import REPO, copy_workflow, job_counts, merged_config, planned_jobs, snakemake

LANGUAGES = ("vi", "id", "bn")


TRANSLATED = ".test/config_translated_benchmarks.yaml"


RELEASED = ".test/config_released_models.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("report") / "workflow")


def dry_run(workdir, override: dict, *targets: str) -> set[tuple]:
    (workdir / "override.yaml").write_text(yaml.safe_dump(override))
    result = snakemake(workdir, *targets, "-n", "--cores", "1", "--configfile", "override.yaml")
    return planned_jobs(result.stdout + result.stderr)


def rules_of(jobs) -> set[str]:
    return {rule for rule, _ in jobs}


def test_evaluation_only_run_fetches_and_scores_the_released_models_without_training(workdir):
    override = {
        "models": [],
        "evaluation": {
            "released_models": {
                "okapi-bloom": {
                    "hub_id": "uonlp/okapi-{lang}-bloom",
                    "languages": ["vi", "id"],
                    "compare_with": {"model": "bloom-7b1", "variant": "ppo"},
                },
                "bloomz": {"hub_id": "bigscience/bloomz-7b1"},
                "mine": {"path": "demo/benchmarks"},
            }
        },
    }
    jobs = dry_run(workdir, override, "tables")
    assert rules_of(jobs) == {"fetch_released_model", "benchmark_data", "evaluate", "paper_tables", "tables"}
    fetched = {
        dict(wildcards)["released"] + "/" + dict(wildcards)["lang_or_all"]
        for rule, wildcards in jobs
        if rule == "fetch_released_model"
    }
    # One copy per language when the hub id names it, one for all otherwise; local paths are not fetched.
    assert fetched == {"okapi-bloom/vi", "okapi-bloom/id", "bloomz/all"}
    scored = {(dict(w)["model"], dict(w)["variant"], dict(w)["lang"]) for rule, w in jobs if rule == "evaluate"}
    assert scored == {("okapi-bloom", "released", "vi"), ("okapi-bloom", "released", "id")} | {
        (name, "released", lang) for name in ("bloomz", "mine") for lang in LANGUAGES
    }


def test_a_translated_benchmark_replaces_the_released_files_for_every_language(workdir):
    result = snakemake(workdir, "scores", "-n", "--cores", "1", "--configfile", TRANSLATED)
    jobs = planned_jobs(result.stdout + result.stderr)
    languages = merged_config(TRANSLATED)["languages"]
    translated = {(dict(w)["bench"], dict(w)["lang"]) for rule, w in jobs if rule == "translate_benchmark"}
    released = {(dict(w)["bench"], dict(w)["lang"]) for rule, w in jobs if rule == "benchmark_data"}
    assert translated == {("arc", lang) for lang in languages}
    assert released == {(bench, lang) for bench in ("hellaswag", "mmlu") for lang in languages}


def test_the_translated_benchmark_config_translates_arc_into_every_language(tmp_path):
    """.test/config_translated_benchmarks.yaml, run to ARC's data in every language: the
    English records through the tiny model, each language's file and QA report."""
    workdir = copy_workflow(tmp_path)
    english = {
        split: json.loads((REPO / f"demo/benchmarks/m_arc/en_{split}.json").read_text(encoding="utf-8"))
        for split in ("test", "train")
    }
    languages = merged_config(TRANSLATED)["languages"]
    targets = [f"results/benchmark_data/arc/{lang}.json" for lang in languages]
    result = snakemake(workdir, "--cores", "2", *targets, "--configfile", TRANSLATED)
    counts = job_counts(result.stdout + result.stderr)
    assert counts["translate_benchmark"] == len(languages) and "benchmark_data" not in counts
    total = sum(len(records) for records in english.values())
    for lang in languages:
        data = json.loads((workdir / f"results/benchmark_data/arc/{lang}.json").read_text())
        qa = json.loads((workdir / f"results/qa/benchmarks/arc/{lang}.json").read_text())
        assert (data["benchmark"], data["language"], data["source"]["source"]) == ("arc", lang, "translate")
        assert (qa["benchmark"], qa["language"], qa["total"]) == ("arc", lang, total)
        assert qa["accepted"] + qa["rejected"] == total and qa["unchanged"] < total
        assert sorted(data["splits"]) == sorted(english)
        for split, records in english.items():
            # Every English record, in order, but those the QA lists as rejected; same answers.
            rejected = {reject["index"] for reject in qa["splits"][split]["rejects"]}
            kept = [record for index, record in enumerate(records) if index not in rejected]
            assert [(r["id"], r["answer"]) for r in data["splits"][split]] == [(r["id"], r["answer"]) for r in kept]
            assert qa["splits"][split]["total"] == len(records)
    plan = snakemake(workdir, "-n", "--cores", "2", *targets, "--configfile", TRANSLATED)
    assert "Nothing to be done" in plan.stdout + plan.stderr


def test_the_released_model_config_scores_a_model_the_workflow_builds_without_training(tmp_path):
    """.test/config_released_models.yaml: its released model is the tiny Llama that the
    workflow builds, an input of its evaluation, so `tables` builds, scores and tabulates
    it with nothing trained."""
    workdir = copy_workflow(tmp_path)
    config = merged_config(RELEASED)
    assert config["models"] == []
    released = config["evaluation"]["released_models"]
    languages = config["languages"]
    result = snakemake(workdir, "--cores", "2", "tables", "--configfile", RELEASED)
    counts = job_counts(result.stdout + result.stderr)
    assert set(counts) == {"tokenizer", "build_tiny_model", "benchmark_data", "evaluate", "paper_tables", "tables"}
    assert counts["evaluate"] == len(released) * len(languages)
    assert not (workdir / "results/models").exists()
    for name in released:
        for lang in languages:
            for bench in BENCHMARKS:
                score = json.loads((workdir / f"results/scores/{name}/released/{lang}/{bench}.json").read_text())
                assert (score["model"], score["variant"], score["language"]) == (name, "released", lang)
                assert score["n_samples"] == config["evaluation"]["limit"]
    for bench in BENCHMARKS:
        table = pd.read_csv(workdir / f"results/tables/{bench}.csv")
        assert not [column for column in table.columns if column.endswith((" base", " sft", " ppo", " dpo"))]
        for name in released:
            scored = table.loc[table["language"].isin(languages), f"{name} released"]
            assert len(scored) == len(languages) and scored.notna().all() and scored.between(0, 100).all()


def test_the_default_target_includes_figures_and_training_curves(workdir):
    jobs = dry_run(workdir, {})
    assert {"paper_figures", "training_curves", "paper_tables"} <= rules_of(jobs)
    curves = {(dict(w)["model"], dict(w)["lang"]) for rule, w in jobs if rule == "training_curves"}
    assert curves == {(model, lang) for model in ("tiny-llama", "tiny-bloom") for lang in LANGUAGES}
