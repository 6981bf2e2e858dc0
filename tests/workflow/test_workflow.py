"""Whole-workflow tests: the demo end to end, incremental reruns, the paper DAG."""

import json
import os
import shlex
import shutil

import pandas as pd
import pytest
import yaml

from okapi_pipeline.config import BENCHMARKS, shard_ids
from tests.support.workflow import REPO, copy_workflow, job_counts, merged_config, planned_jobs, snakemake

DEMO = yaml.safe_load((REPO / "config.yaml").read_text())


# The demo with DPO beside PPO (.test/config_dpo.yaml), so that the run also trains, scores
# and tabulates the `dpo` variant; the follow-up plans load the same file.
WITH_DPO = ("--configfile", ".test/config_dpo.yaml")


DPO_METHODS = merged_config(".test/config_dpo.yaml")["rlhf"]["methods"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo, run once to the end in a private copy of the workflow."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    snakemake(workdir, "--cores", "2", *WITH_DPO)
    return workdir


def test_demo_writes_the_paper_tables(demo_run):
    for bench in BENCHMARKS:
        table = pd.read_csv(demo_run / f"results/tables/{bench}.csv")
        languages = set(table["language"])
        assert set(DEMO["languages"]) <= languages
        for model in DEMO["models"]:
            for variant in ("base", "sft", *DPO_METHODS):
                column = f"{model} {variant}"
                assert column in table.columns
                scored = table.loc[table["language"].isin(DEMO["languages"]), column]
                assert scored.notna().all() and scored.between(0, 100).all()
        markdown = (demo_run / f"results/tables/{bench}.md").read_text()
        assert "high" in markdown and "low" in markdown


def test_demo_models_and_data_are_where_the_readme_says(demo_run):
    for model in DEMO["models"]:
        for lang in DEMO["languages"]:
            for stage in ("sft", "rm", *DPO_METHODS):
                folder = demo_run / f"results/models/{model}/{lang}/{stage}"
                assert (folder / "config.json").exists()
                summary = json.loads((folder / "training_summary.json").read_text())
                assert summary["steps"] > 0
                # What a user gets with it: the card and the Alpaca prompt as the chat template.
                card = (folder / "README.md").read_text()
                assert f"language:\n- {lang}\n" in card and f"steps: {summary['steps']}" in card
                assert (folder / "chat_template.jinja").exists()
    # One ranking set per language, from the SFT model of `ranking.responses_from`.
    responder = DEMO["ranking"]["responses_from"]
    assert sorted(p.name for p in (demo_run / "results/rankings").iterdir()) == [responder]
    for lang in DEMO["languages"]:
        # Every translated rm prompt answered once, in order, by its shard's generation job.
        answered = [
            json.loads(line)["id"]
            for shard in shard_ids(DEMO, "rm")
            for line in (demo_run / f"results/rankings/{responder}/{lang}/shards/{shard}.responses.jsonl")
            .read_text()
            .splitlines()
        ]
        prompts = (demo_run / f"results/data/{lang}/rm.jsonl").read_text().splitlines()
        assert answered == [json.loads(line)["id"] for line in prompts]
        pairs = (demo_run / f"results/rankings/{responder}/{lang}/pairs.jsonl").read_text()
        first = json.loads(pairs.splitlines()[0])
        assert {"instruction", "input", "prefered_output", "rejected_output"} <= set(first)
    for lang in DEMO["languages"]:
        qa = json.loads((demo_run / f"results/qa/{lang}.json").read_text())
        assert qa


JOINT = merged_config(".test/config_joint.yaml")


def test_joint_and_per_language_models_of_a_tiny_qwen2_are_trained_scored_and_compared(tmp_path):
    """.test/config_joint.yaml to the end: a tiny Qwen2 model trained per language and
    on both languages at once, every model scored in both, the tables and figure."""
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--cores", "2", "--configfile", ".test/config_joint.yaml")
    counts = job_counts(result.stdout + result.stderr)
    # Per model: one per language and one joint, for SFT, the reward model and PPO.
    assert counts["train_sft"] == counts["train_reward_model"] == counts["train_ppo"] == len(JOINT["languages"]) + 1
    [model] = JOINT["models"]
    assert json.loads((workdir / f"resources/models/{model}/config.json").read_text())["model_type"] == "qwen2"
    # The joint data: as many records from each language (joint_mix: equal), ids unique.
    for split in ("sft", "ppo"):
        records = [
            json.loads(line) for line in (workdir / f"results/data/joint/{split}.jsonl").read_text().splitlines()
        ]
        per_language = {lang: sum(r["language"] == lang for r in records) for lang in JOINT["languages"]}
        assert len(set(per_language.values())) == 1 and len({r["id"] for r in records}) == len(records)
    for stage in ("sft", "rm", "ppo"):
        summary = json.loads((workdir / f"results/models/{model}/joint/{stage}/training_summary.json").read_text())
        assert summary["steps"] > 0
    for bench in BENCHMARKS:
        table = pd.read_csv(workdir / f"results/tables/{bench}.csv")
        rows = table["language"].isin(JOINT["languages"])
        for variant in ("base", "sft", "ppo", "joint-sft", "joint-ppo"):
            assert table.loc[rows, f"{model} {variant}"].between(0, 100).all()
        for lang in JOINT["languages"]:
            score = json.loads((workdir / f"results/scores/{model}/joint-ppo/{lang}/{bench}.json").read_text())
            assert (score["model"], score["variant"], score["language"]) == (model, "joint-ppo", lang)
        assert (workdir / f"results/figures/{bench}/joint_minus_per_language.png").stat().st_size > 5000
    assert (workdir / f"results/figures/training/{model}/joint.png").exists()
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", ".test/config_joint.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_after_the_demo_nothing_is_left_to_do(demo_run):
    result = snakemake(demo_run, "-n", "--cores", "2", *WITH_DPO)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_translation_reruns_only_that_language(demo_run):
    """New content in one language's SFT data reruns exactly that language's downstream jobs."""
    data = demo_run / "results/data/vi/sft.jsonl"
    backup = data.read_bytes()
    try:
        records = [json.loads(line) for line in backup.decode().splitlines()]
        records[0]["output"] += " (sửa)"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        result = snakemake(demo_run, "-n", "--cores", "2", *WITH_DPO)
    finally:
        data.write_bytes(backup)

    expected = {("all", ()), ("translation_qa", (("lang", "vi"),))}
    for bench in BENCHMARKS:
        expected |= {("paper_tables", (("bench", bench),)), ("paper_figures", (("bench", bench),))}
    responder = DEMO["ranking"]["responses_from"]
    expected.add(("preference_pairs", (("lang", "vi"), ("model", responder))))
    for shard in shard_ids(DEMO, "rm"):
        for rule in ("generate_responses", "rank_shard"):
            expected.add((rule, (("lang", "vi"), ("model", responder), ("shard", shard))))
    for model in DEMO["models"]:
        per_model = (("lang", "vi"), ("model", model))
        for rule in ("train_sft", "train_reward_model", "train_ppo", "train_dpo", "training_curves"):
            expected.add((rule, per_model))
        for variant in ("sft", "ppo", "dpo"):
            expected.add(("evaluate", (("lang", "vi"), ("model", model), ("variant", variant))))
    assert planned_jobs(result.stdout + result.stderr) == expected


def test_paper_dag_plans_every_stage_offline(tmp_path):
    """The paper config plans 26 languages x 2 models without touching the network."""
    workdir = copy_workflow(tmp_path)
    # In a namespace with no network at all, where unshare is allowed (root here and in CI).
    no_network = ("unshare", "--net") if shutil.which("unshare") and os.geteuid() == 0 else ()
    result = snakemake(
        workdir, "-n", "--cores", "2", "--quiet", "rules", "--configfile", "configs/paper.yaml", prefix=no_network
    )
    counts = job_counts(result.stdout + result.stderr)
    paper = yaml.safe_load((workdir / "configs/paper.yaml").read_text())
    languages, models = len(paper["languages"]), len(paper["models"])
    assert languages == 26 and models == 2
    shards = sum(len(shard_ids({**DEMO, **paper}, split)) for split in ("sft", "rm", "ppo"))
    assert counts["translate_shard"] == languages * shards
    for rule in ("train_sft", "train_reward_model", "train_ppo"):
        assert counts[rule] == languages * models, rule
    # One ranking set per language (BLOOM's SFT answers), shared by both models: one
    # generation job per rm shard (no single job answers a language's 42K prompts).
    assert counts["preference_pairs"] == languages
    rm_shards = len(shard_ids({**DEMO, **paper}, "rm"))
    assert rm_shards == 21  # 42K prompts in shards of 2000
    assert counts["generate_responses"] == counts["rank_shard"] == languages * rm_shards
    assert counts["fetch_seed_tasks"] == 1
    assert counts["evaluate"] == languages * models * 3
    assert "train_dpo" not in counts  # the paper trains PPO only (rlhf.methods)
    assert counts["fetch_base_model"] == models
    assert counts["benchmark_data"] == languages * len(BENCHMARKS)


def header_command(name: str) -> list[str]:
    """The arguments of the `snakemake ...` command that a .test config's header comment gives."""
    for line in (REPO / ".test" / name).read_text().splitlines():
        if not line.startswith("#"):
            break
        words = shlex.split(line.lstrip("# "))
        if words[:1] == ["snakemake"]:
            return words[1:]
    raise AssertionError(f".test/{name}: no `snakemake ...` command in the header comment")


@pytest.mark.parametrize("name", [path.name for path in sorted((REPO / ".test").glob("*.yaml"))])
def test_every_test_config_plans_with_the_command_its_header_gives(tmp_path, name):
    """Each .test config, as the snakemake-workflows catalog runs them: the command of its
    header, planned (the slow tests run them)."""
    workdir = copy_workflow(tmp_path)
    args = header_command(name)
    assert args[args.index("--configfile") + 1] == f".test/{name}"
    result = snakemake(workdir, "-n", *args)
    assert job_counts(result.stdout + result.stderr)


def test_a_bad_config_stops_snakemake_with_one_line_naming_the_key(tmp_path):
    """End to end: `snakemake -n` prints the config check's one line (the cases are in
    tests/unit/test_config.py) and plans nothing."""
    workdir = copy_workflow(tmp_path)
    (workdir / "override.yaml").write_text("languages: [vi, xx]\n")
    result = snakemake(workdir, "-n", "--cores", "1", "--configfile", "override.yaml", check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("config:")]
    assert len(lines) == 1 and lines[0].startswith("config: 'languages.1': unknown language code 'xx'")
    assert not (workdir / "results").exists()
