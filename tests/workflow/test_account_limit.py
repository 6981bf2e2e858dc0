"""API jobs on the cluster: Snakemake gives each an API slot in the API partition."""

import re

import yaml

from tests.support.workflow import copy_workflow, snakemake


def test_api_jobs_on_the_cluster_take_an_api_slot_in_the_api_partition(tmp_path):
    work = copy_workflow(tmp_path / "work")
    overrides = {"llm": {"api_jobs": "cluster"}, "translation": {"llm": {"backend": "openai", "model": "m"}}}
    (work / "api.yaml").write_text(yaml.safe_dump(overrides))
    env = {"OKAPI_API_PARTITION": "net", "OKAPI_GPU_PARTITION": "gpu"}
    plan = snakemake(work, "-n", "--configfile", "api.yaml", env=env).stdout
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", plan, re.MULTILINE)
    shards = [resources for rule, resources in jobs if rule == "translate_shard"]
    assert shards and all("api_jobs=1" in r and "slurm_partition=net" in r for r in shards)
    # The local-model stages keep their GPU in the GPU partition.
    self_instruct = [resources for rule, resources in jobs if rule == "self_instruct"]
    assert self_instruct and "gpu=1" in self_instruct[0] and "slurm_partition=gpu" in self_instruct[0]
