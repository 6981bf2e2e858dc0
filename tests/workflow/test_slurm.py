"""The SLURM profile on a real single-node SLURM cluster, started and stopped here,
and the cluster plan of the paper run.

A small workflow (tests/slurm/workflow) whose rules carry the real rules' names runs
through `slurm/` to the end; every sbatch call is logged with what SLURM recorded.
"""

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import time

import pytest
import torch
import yaml

from okapi_pipeline.cluster.gpu_jobs import GPU_RULES, gpu_job, read_measurements
from okapi_pipeline.config import load_schema, shard_ids, validate_config
from tests.slurm import cluster as slurm
from tests.support.workflow import REPO, copy_workflow, merged_config


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running cluster (see tests/slurm/cluster.py); stopped, and checked stopped, at the end."""
    reason = slurm.missing_requirements()
    if reason:
        pytest.skip(reason)
    cluster = slurm.start(tmp_path_factory.mktemp("slurm"))
    yield cluster
    slurm.stop(cluster)


# The test cluster's partitions for --slurm-partition-config (slurm/partitions.example.yaml).
PARTITIONS = {"partitions": {"cpu": {"max_runtime": 600}, "gpu": {"max_gpu": 1, "max_runtime": 600}}}
MAIL_USER = "okapi@example.org"


@pytest.fixture(scope="module")
def small_run(slurm_cluster, tmp_path_factory):
    """The small workflow run to the end through the profile, its partitions chosen by the
    plugin from a partition file (none set in the environment) and failure mail on; its
    workdir and submissions. (The demo run takes its partitions from the environment.)"""
    workdir = tmp_path_factory.mktemp("slurm-workflow")
    shutil.copy(REPO / "tests/slurm/workflow/Snakefile", workdir / "Snakefile")
    shutil.copytree(REPO / "slurm", workdir / "slurm")
    (workdir / "partitions.yaml").write_text(yaml.safe_dump(PARTITIONS))
    env = {name: value for name, value in slurm_cluster.env.items() if not name.endswith("_PARTITION")}
    before = len(slurm_cluster.submissions())
    result = slurm_cluster.snakemake(
        workdir, "--slurm-partition-config", "partitions.yaml", env={**env, "OKAPI_MAIL_USER": MAIL_USER}
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return workdir, slurm_cluster.submissions()[before:]


def where(path):
    """What a job of the small workflow wrote about where it ran."""
    return ast.literal_eval(path.read_text())


def submitted(submissions, comment):
    """The sbatch calls whose --comment (rule and wildcards) is `comment`."""
    return [s for s in submissions if slurm.comment_of(s) == comment]


@pytest.mark.slurm
def test_gpu_rules_are_submitted_with_their_gpus_cpus_memory_and_time(small_run):
    workdir, submissions = small_run
    assert all(s["returncode"] == 0 for s in submissions)
    [sft] = submitted(submissions, "rule_train_sft_wildcards_vi")
    assert {"--gpus=1", "--cpus-per-gpu=8"} <= set(sft["args"])
    assert " -p gpu " in " ".join(sft["args"]) + " "
    assert sft["args"][sft["args"].index("--mem") + 1] == "5000"
    # What SLURM recorded: one GPU, 8 CPUs per GPU, a tiny model's 30 minutes, the GPU partition.
    assert sft["job"]["TresPerJob"] == "gres:gpu:1"
    assert sft["job"]["CpusPerTres"] == "gres:gpu:8"
    assert sft["job"]["TimeLimit"] == "00:30:00"
    assert sft["job"]["Partition"] == "gpu"
    for lang in ("vi", "bn"):
        # Asked for as a generic resource (site.gpu_request: gres): --gres, not --gpus.
        [evaluate] = submitted(submissions, f"rule_evaluate_wildcards_{lang}")
        assert "--gres=gpu:1" in evaluate["args"] and not any(a.startswith("--gpus") for a in evaluate["args"])
        assert evaluate["job"]["Partition"] == "gpu"
        assert evaluate["job"]["TresPerNode"] == "gres:gpu:1"
        assert evaluate["job"]["TimeLimit"] == "00:30:00"
        # The job ran inside its allocation and SLURM gave it a GPU.
        ran = where(workdir / f"results/scores/{lang}.txt")
        assert ran["slurm_job_id"] == evaluate["stdout"].strip()
        assert ran["gpus"] != ""


@pytest.mark.slurm
def test_every_job_mails_its_user_when_it_fails_or_runs_out_of_time(small_run):
    _, submissions = small_run
    assert submissions and all(s["job"]["MailUser"] == MAIL_USER for s in submissions)
    assert all(set(s["job"]["MailType"].split(",")) == {"TIME_LIMIT", "FAIL"} for s in submissions)
    assert all("--requeue" in " ".join(s["args"]) for s in submissions)  # preempted jobs come back


@pytest.mark.slurm
def test_a_retried_job_asks_for_more_time(small_run):
    workdir, submissions = small_run
    # The small workflow's train_sft for bn fails on its first attempt.
    first, second = submitted(submissions, "rule_train_sft_wildcards_bn")
    assert first["job"]["TimeLimit"] == "00:30:00"
    assert second["job"]["TimeLimit"] == "01:00:00"
    assert where(workdir / "results/models/bn/sft.txt")["slurm_job_id"] == second["stdout"].strip()


@pytest.mark.slurm
def test_cpu_rules_get_the_default_resources_and_partition(small_run):
    _, submissions = small_run
    [split] = submitted(submissions, "rule_split_instructions")
    assert not any(arg.startswith("--gpus") for arg in split["args"])
    assert split["job"]["Partition"] == "cpu"
    assert split["job"]["TimeLimit"] == "01:00:00"
    assert split["args"][split["args"].index("--mem") + 1] == "8000"


@pytest.mark.slurm
def test_shards_are_grouped_into_few_jobs_with_one_gpu_each(small_run):
    workdir, submissions = small_run
    groups = [s for s in submissions if "group_translate" in s["args"][s["args"].index("--output") + 1]]
    # 8 shards, 4 per SLURM job, run one after the other: 1 GPU for 4 x 30 minutes.
    assert len(groups) == 2
    for group in groups:
        assert group["job"]["TresPerJob"] == "gres:gpu:1"
        assert group["job"]["TimeLimit"] == "02:00:00"
    shard_jobs = {
        where(path)["slurm_job_id"] for lang in ("vi", "bn") for path in (workdir / "results" / lang).glob("000?.txt")
    }
    assert shard_jobs == {group["stdout"].strip() for group in groups}


@pytest.mark.slurm
def test_localrules_stay_on_the_submitting_machine(small_run):
    workdir, submissions = small_run
    comments = {slurm.comment_of(s) for s in submissions}
    assert not any("load_instructions" in c or "paper_tables" in c for c in comments)
    assert where(workdir / "results/en.txt")["slurm_job_id"] == "local"
    assert (workdir / "results/report.txt").exists()


@pytest.mark.slurm
def test_a_rerun_submits_nothing(small_run, slurm_cluster):
    workdir, _ = small_run
    before = len(slurm_cluster.submissions())
    result = slurm_cluster.snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr
    assert len(slurm_cluster.submissions()) == before


# The rules that run on GPUs on a cluster (their resources), and how many jobs of each
# the demo has in one language with one model (what the local workflow tests run whole):
# one per stage, one per variant scored, one per rm shard of responses, and the SFT of
# the model whose responses are ranked (ranking.responses_from: tiny-bloom).
DEMO_RM_SHARDS = len(shard_ids(merged_config(), "rm"))
DEMO_GPU_JOBS = {
    "train_sft": 2,
    "train_reward_model": 1,
    "train_ppo": 1,
    "generate_responses": DEMO_RM_SHARDS,
    "evaluate": 3,
}
ONE_LANGUAGE_ONE_MODEL = ("--config", "languages=[vi]", "models=[tiny-llama]")


@pytest.fixture(scope="module")
def demo_run(slurm_cluster, tmp_path_factory):
    """The embedded demo in one language with one model, run to the end through the
    profile on the small node (8 CPUs, 16 GB, one GPU); its workdir and submissions."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-demo"))
    before = len(slurm_cluster.submissions())
    # Two jobs at a time on this 2-core machine, one torch thread each.
    one_thread = [f"{rule}=1" for rule in DEMO_GPU_JOBS]
    result = slurm_cluster.snakemake(
        workdir, "--jobs", "2", "--set-threads", *one_thread, *ONE_LANGUAGE_ONE_MODEL, timeout=1800
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return workdir, slurm_cluster.submissions()[before:]


@pytest.mark.slurm
def test_the_demo_runs_through_sbatch_with_gpus_for_the_gpu_rules(demo_run):
    workdir, submissions = demo_run
    assert all(s["returncode"] == 0 for s in submissions)
    for rule, count in DEMO_GPU_JOBS.items():
        jobs = [s for s in submissions if slurm.comment_of(s).startswith(f"rule_{rule}_")]
        assert len(jobs) == count, rule
        for job in jobs:
            assert "--gpus=1" in job["args"]
            assert job["job"]["TresPerJob"] == "gres:gpu:1"
            assert job["job"]["Partition"] == "gpu"
            # A tiny model asks for little: it fits the 16 GB node.
            assert int(job["args"][job["args"].index("--mem") + 1]) <= 8000
            assert job["job"]["TimeLimit"] == "00:30:00"
    # Login-node rules were never submitted; the tables came out of the run.
    submitted_rules = " ".join(slurm.comment_of(s) for s in submissions)
    for rule in ("load_instructions", "gather_translations", "paper_tables"):
        assert f"rule_{rule}" not in submitted_rules
    assert (workdir / "results/tables/arc.csv").exists()


@pytest.mark.slurm
def test_a_rerun_of_the_demo_submits_nothing(demo_run, slurm_cluster):
    workdir, _ = demo_run
    before = len(slurm_cluster.submissions())
    result = slurm_cluster.snakemake(workdir, "--jobs", "2", *ONE_LANGUAGE_ONE_MODEL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr
    assert len(slurm_cluster.submissions()) == before


# ---- jobs the cluster stops ------------------------------------------------------------
RUNS = ("uninterrupted", "cancelled", "requeued", "timeout")


@pytest.fixture(scope="module")
def interrupted_run(slurm_cluster, tmp_path_factory, tiny_llama_dir):
    """tests/slurm/interrupted run to the end with job states from sacct: one tiny SFT job
    four times, `cancelled` scancelled and `requeued` requeued (scontrol requeue) after
    their 4th step's checkpoint, `timeout` stopped by its 1-minute limit."""
    from okapi_pipeline.jsonl import write_jsonl
    from tests.support.training import SFT_SETTINGS, instruction_records

    workdir = tmp_path_factory.mktemp("slurm-interrupted")
    shutil.copy(REPO / "tests/slurm/interrupted/Snakefile", workdir / "Snakefile")
    shutil.copytree(REPO / "slurm", workdir / "slurm")
    write_jsonl(workdir / "sft.jsonl", instruction_records(40))
    settings = {**SFT_SETTINGS, "epochs": 8, "save_steps": 2}  # 40 steps, a checkpoint every 2
    config = dict(base=str(tiny_llama_dir), data="sft.jsonl", settings=settings, seconds_per_step=3.0)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    before = len(slurm_cluster.submissions())
    command = slurm_cluster.snakemake_command("--slurm-status-command", "sacct", timeout=1200)
    log = open(workdir / "snakemake.log", "w")
    snakemake = subprocess.Popen(command, cwd=workdir, env=slurm_cluster.env, stdout=log, stderr=subprocess.STDOUT)
    stop = {"cancelled": ["scancel"], "requeued": ["scontrol", "requeue"]}
    while stop and snakemake.poll() is None:
        for run in [run for run in stop if (workdir / f"checkpoints/{run}/checkpoint-4/trainer_state.json").exists()]:
            subprocess.run([*stop.pop(run), slurm_cluster.job_id(f"rule_train_wildcards_{run}")], check=True)
        time.sleep(0.5)
    snakemake.wait()
    output = (workdir / "snakemake.log").read_text()
    assert snakemake.returncode == 0, output[-6000:]
    return workdir, output, slurm_cluster.submissions()[before:]


@pytest.mark.slurm
def test_jobs_the_cluster_stops_fail_and_are_retried_or_requeued(interrupted_run):
    _, output, submissions = interrupted_run
    # sacct says "CANCELLED by 0"; the workflow reads CANCELLED, fails the job and retries it.
    assert "SLURM status is: 'CANCELLED'" in output
    assert "SLURM status is: 'TIMEOUT'" in output
    jobs_of = {run: submitted(submissions, f"rule_train_wildcards_{run}") for run in RUNS}
    assert {run: len(jobs) for run, jobs in jobs_of.items()} == {
        "uninterrupted": 1,
        "cancelled": 2,
        "requeued": 1,  # SLURM ran the same job again
        "timeout": 2,
    }
    assert [job["job"]["TimeLimit"] for job in jobs_of["timeout"]] == ["00:01:00", "00:15:00"]


@pytest.mark.slurm
def test_a_stopped_training_job_resumes_from_its_checkpoint_to_the_same_model(interrupted_run):
    from safetensors.torch import load_file

    workdir, _, _ = interrupted_run
    summary = {run: json.loads((workdir / f"models/{run}/training_summary.json").read_text()) for run in RUNS}
    assert summary["uninterrupted"]["resumed_from_step"] == 0
    for run in ("cancelled", "requeued", "timeout"):
        assert 4 <= summary[run]["resumed_from_step"] < 40, run
        assert [point["step"] for point in summary[run]["loss"]] == list(range(1, 41))
    whole = load_file(workdir / "models/uninterrupted/model.safetensors")
    for run in ("cancelled", "requeued", "timeout"):
        resumed = load_file(workdir / f"models/{run}/model.safetensors")
        assert all(torch.equal(resumed[name], tensor) for name, tensor in whole.items()), run


def load_plan_cluster():
    spec = importlib.util.spec_from_file_location("plan_cluster", REPO / "tools/plan_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# configs/paper.yaml: bloom-7b1 and llama-7b.
PAPER_PARAMETERS = {"bloom-7b1": 7.07e9, "llama-7b": 6.74e9}


def planned_gpu_jobs(configfiles: list[str], stage: str, **job) -> dict:
    """What okapi_pipeline.cluster.gpu_jobs says a job of `stage` asks for, per paper model."""
    config = validate_config(merged_config(*configfiles), load_schema())
    measurements = read_measurements(REPO / "reference" / "gpu_measurements.csv")
    return {model: gpu_job(stage, p, config, measurements, **job) for model, p in PAPER_PARAMETERS.items()}


def test_the_paper_plan_counts_jobs_and_gpu_hours_without_a_cluster(tmp_path, monkeypatch):
    # SLURM commands that fail, as on a laptop, and record any call.
    calls = tmp_path / "calls"
    (tmp_path / "bin").mkdir()
    for command in ("sbatch", "squeue", "srun", "scancel", "sacct", "scontrol", "sinfo"):
        fake = tmp_path / "bin" / command
        fake.write_text(f'#!/bin/sh\necho {command} "$@" >> {calls}\nexit 1\n')
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    plans = {p.rule: p for p in load_plan_cluster().plan("slurm", ["configs/paper.yaml"])}

    # The paper translates and ranks through the OpenAI API: on the login node, no GPUs.
    for rule in ("translate_shard", "rank_shard", "self_instruct"):
        assert plans[rule].local and plans[rule].gpu_hours == 0
    assert plans["translate_shard"].jobs == 26 * 79  # 158K instructions in shards of 2000
    # 2 models x 26 languages (responses: bloom-7b1's only, ranking.responses_from), each
    # asking for what okapi_pipeline.cluster.gpu_jobs computes from the measured table for its size.
    responders = {"generate_responses": ["bloom-7b1"]}
    for rule, stage in GPU_RULES.items():
        if rule == "train_dpo":
            continue  # not a paper method
        expected = planned_gpu_jobs(["configs/paper.yaml"], stage)
        models = responders.get(rule, list(PAPER_PARAMETERS))
        assert not plans[rule].local
        assert plans[rule].gpus == {expected[model]["gpu"] for model in models}, rule
        assert plans[rule].runtimes_h == {expected[model]["runtime"] / 60 for model in models}, rule
        per_language = sum(expected[model]["gpu"] * expected[model]["runtime"] / 60 for model in models)
        # Scored thrice (base, sft, ppo); responses generated per rm shard (42K in 21).
        jobs_per_model = {"evaluate": 3 * 26, "generate_responses": 26 * 21}.get(rule, 26)
        assert plans[rule].gpu_hours == pytest.approx(jobs_per_model * per_language), rule
    # On the default site (80 GB cards) a 7B SFT shards over two.
    assert plans["train_sft"].gpus == {2} and plans["train_sft"].slurm_jobs == 52
    assert plans["evaluate"].jobs == 2 * 3 * 26
    # Nothing was submitted or asked about jobs (the SLURM plugin only reads the config).
    called = calls.read_text().split("\n") if calls.exists() else []
    assert not [line for line in called if line and not line.startswith("scontrol show config")]


def test_joint_training_jobs_ask_for_several_gpus_and_the_work_of_every_language():
    plans = {p.rule: p for p in load_plan_cluster().plan("slurm", ["configs/paper.yaml", "configs/joint.yaml"])}
    # Per model: 26 per-language jobs, and one joint job on 8 GPUs (PPO: 7, which its
    # batches of 896 and 7 divide by) with the work of all 26.
    configs = ["configs/paper.yaml", "configs/joint.yaml"]
    for rule, gpus in (("train_sft", 8), ("train_reward_model", 8), ("train_ppo", 7)):
        stage = GPU_RULES[rule]
        per_language = planned_gpu_jobs(configs, stage).values()
        joint = planned_gpu_jobs(configs, stage, languages=26, least_gpus=gpus).values()
        assert plans[rule].slurm_jobs == 2 * 27
        assert {job["gpu"] for job in joint} == {gpus}
        assert plans[rule].gpus == {job["gpu"] for job in [*per_language, *joint]}
        assert plans[rule].runtimes_h == {job["runtime"] / 60 for job in [*per_language, *joint]}
        hours = 26 * sum(j["gpu"] * j["runtime"] for j in per_language) + sum(j["gpu"] * j["runtime"] for j in joint)
        assert plans[rule].gpu_hours == pytest.approx(hours / 60)
    # Both scopes scored in every language: base, sft, ppo, joint-sft, joint-ppo.
    assert plans["evaluate"].jobs == 2 * 5 * 26


def test_the_sites_resources_for_one_rule_are_one_setting_and_keep_the_partition(tmp_path, monkeypatch):
    profile = tmp_path / "slurm"
    shutil.copytree(REPO / "slurm", profile)
    text = (profile / "config.yaml").read_text()
    (profile / "config.yaml").write_text(
        text.replace(
            "  rule_resources: {}\n", "  rule_resources: {train_sft: {gpu: 8}, load_instructions: {mem_mb: 500}}\n"
        )
    )
    monkeypatch.setenv("OKAPI_GPU_PARTITION", "gpu")
    jobs = load_plan_cluster().dry_run_jobs(str(profile), ["configs/paper.yaml"], forceall=True)
    sft = [resources for rule, resources in jobs if rule == "train_sft"]
    assert len(sft) == 52 and all(r["gpu"] == "8" and r["slurm_partition"] == "gpu" for r in sft)
    # The other GPU rules keep their own sizes and the partition; a login-node rule takes its setting.
    ppo = [resources for rule, resources in jobs if rule == "train_ppo"]
    assert all(r["gpu"] != "8" and r["slurm_partition"] == "gpu" for r in ppo)
    assert [r["mem_mb"] for rule, r in jobs if rule == "load_instructions"] == ["500"]


def test_a_gres_site_asks_for_the_same_gpus_as_a_generic_resource(tmp_path):
    tool = load_plan_cluster()
    gres = tmp_path / "gres.yaml"
    gres.write_text("site: {gpu_request: gres}\n")
    jobs = tool.dry_run_jobs("slurm", ["configs/paper.yaml", str(gres)], forceall=True)
    gpu_jobs = [resources for rule, resources in jobs if rule in GPU_RULES]
    assert gpu_jobs and all("gpu" not in r and r["gres"].startswith("gpu:") for r in gpu_jobs)
    gpu_hours = {
        files: sum(entry.gpu_hours for entry in tool.plan("slurm", list(files)))
        for files in (("configs/paper.yaml",), ("configs/paper.yaml", str(gres)))
    }
    gpus, gres = gpu_hours.values()
    assert gres == pytest.approx(gpus)


def test_the_readme_first_screen_says_what_plan_cluster_says():
    """The cost table at the top of the README, row by row, against the tool that made it."""
    tool = load_plan_cluster()
    readme = (REPO / "README.md").read_text()
    rows = {
        cells[0].strip("` "): cells[2:]
        for line in readme.split("## Start here", 1)[1].split("\n## ", 1)[0].splitlines()
        if line.startswith("| `configs/") and (cells := [cell.strip() for cell in line.strip("|").split("|")])
    }
    assert set(rows) == {"configs/paper.yaml configs/paper-release.yaml", "configs/paper.yaml"}
    for run, (gpu_hours, chain, dollars, disk) in rows.items():
        files = run.split()
        plans, config = tool.plan("slurm", files), tool.workflow_rules(files)[1]
        online = round(sum(tool.api_dollars(files).values()))
        assert gpu_hours == f"{round(sum(p.gpu_hours for p in plans)):,}", run
        assert chain == f"{round(tool.longest_gpu_chain_hours(plans))} h", run
        assert dollars == (f"{online:,} / {round(tool.BATCH_PRICE_SHARE * online):,}" if online else "0"), run
        assert disk == f"{tool.trained_model_terabytes(config):.1f} TB", run
