"""The released Okapi data through the workflow: the paper on it plans no LLM stage,
plan_cluster prices it at no API cost, and the demo trains and evaluates from such files."""

import json

import yaml

from okapi_pipeline.jsonl import read_jsonl
from tests.support.okapi_release_files import write_release_files
from tests.support.workflow import copy_workflow, job_counts, load_tool, merged_config, snakemake

# ---- the whole workflow ------------------------------------------------------------------------


def test_the_paper_on_the_released_data_plans_no_llm_stage(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir, "-n", "--quiet", "rules", "--configfile", "configs/paper.yaml", "configs/paper-release.yaml"
    )
    counts = job_counts(result.stdout + result.stderr)
    llm_rules = {"load_instructions", "fetch_seed_tasks", "self_instruct", "split_instructions", "translate_shard"}
    llm_rules |= {"generate_responses", "back_translate_shard", "rank_shard", "preference_pairs", "translation_qa"}
    assert not llm_rules & set(counts)
    assert counts["fetch_okapi_release"] == 26 * 3
    assert counts["okapi_release_data"] == 26 * 2 and counts["okapi_release_pairs"] == 26
    for rule in ("train_sft", "train_reward_model", "train_ppo"):
        assert counts[rule] == 26 * 2


def test_plan_cluster_shows_the_release_config_at_no_api_cost_beside_the_paper():
    plan_cluster = load_tool("plan_cluster")
    assert set(plan_cluster.api_dollars(["configs/paper.yaml", "configs/paper-release.yaml"]).values()) == {0}
    paper = plan_cluster.api_dollars(["configs/paper.yaml"])
    assert paper["translation"] > 1000 and paper["ranking"] > 0
    sft = plan_cluster.RulePlan("train_sft", "sft", local=False, jobs=2, slurm_jobs=2, gpu_hours=10.4, runtimes_h={5.2})
    evaluate = plan_cluster.RulePlan("evaluate", "evaluate", local=False, jobs=2, slurm_jobs=2, runtimes_h={2, 3})
    translate = plan_cluster.RulePlan("translate_shard", "translate", local=True, jobs=9)
    config = {
        "rlhf": {"methods": ["ppo"]},
        "languages": ["vi", "id"],
        "training": {"scope": ["per_language"]},
        "models": ["m"],
        "base_models": {"m": {"parameters": 7e9}},
    }
    table = plan_cluster.side_by_side(
        {
            "paper": ([sft, evaluate, translate], {"translation": 1320.4}, config),
            "released data": ([sft], {"translation": 0.0}, config),
        }
    )
    lines = {line.split("  ")[0].strip(): line.split()[-2:] for line in table.splitlines()[1:]}
    assert lines["GPU hours: sft"] == ["10", "10"] and lines["API $: total"] == ["1320", "0"]
    assert lines["API $: total in batch mode"] == ["660", "0"]  # the Batch API's half price
    # SFT then evaluation, each stage's longest job; fp32 SFT, reward model and PPO of 2 languages.
    assert lines["hours: longest chain of GPU jobs"] == ["8", "5"]
    assert lines["TB: trained models (fp32)"] == ["0.2", "0.2"]  # 4 B x 7e9 x 3 stages x 2 languages
    assert table.splitlines()[0].split() == ["paper", "released", "data"]


RELEASE = merged_config(".test/config_okapi_release.yaml")


def test_the_demo_trains_and_evaluates_from_the_released_format(tmp_path, lfs_host):
    """.test/config_okapi_release.yaml to the end, the files served over HTTP as by the LFS host."""
    served, url = lfs_host
    write_release_files(served)
    workdir = copy_workflow(tmp_path / "workflow")
    (workdir / "served.yaml").write_text(
        yaml.safe_dump({"okapi_release": {"path": None, "url": url + "/{dataset}/{file}"}})
    )
    result = snakemake(workdir, "--cores", "2", "--configfile", ".test/config_okapi_release.yaml", "served.yaml")
    counts = job_counts(result.stdout + result.stderr)
    assert counts["fetch_okapi_release"] == 6 and "translate_shard" not in counts and "rank_shard" not in counts
    [model] = RELEASE["models"]
    for lang in RELEASE["languages"]:
        assert len(read_jsonl(workdir / f"results/data/{lang}/sft.jsonl")) == 32
        pairs = read_jsonl(workdir / f"results/rankings/okapi_release/{lang}/pairs.jsonl")
        assert len(pairs) == 36 and len({p["id"] for p in pairs}) == 12
        for stage in ("sft", "rm", "ppo"):
            summary = json.loads((workdir / f"results/models/{model}/{lang}/{stage}/training_summary.json").read_text())
            assert summary["steps"] > 0
        score = json.loads((workdir / f"results/scores/{model}/ppo/{lang}/arc.json").read_text())
        assert 0 <= score["metrics"]["acc"] <= 1
    assert not (workdir / "results/data/en").exists()
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", ".test/config_okapi_release.yaml", "served.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr
