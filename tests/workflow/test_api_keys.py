"""A stage that will call the API needs its key before a real run's first job; a dry run still plans."""

import yaml

from tests.support.configs import ABSENT_KEY_OVERRIDE
from tests.support.workflow import copy_workflow, snakemake


def test_a_real_run_stops_before_its_first_job_and_a_dry_run_still_plans(tmp_path, monkeypatch):
    monkeypatch.delenv("OKAPI_ABSENT_KEY", raising=False)
    workdir = copy_workflow(tmp_path)
    (workdir / "override.yaml").write_text(yaml.safe_dump(ABSENT_KEY_OVERRIDE))
    planned = snakemake(workdir, "-n", "--cores", "1", "--configfile", "override.yaml")
    assert "translate_shard" in planned.stdout
    result = snakemake(workdir, "--cores", "1", "--configfile", "override.yaml", check=False)
    assert result.returncode != 0
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert last.startswith("the environment variable OKAPI_ABSENT_KEY is not set: the self_instruct, translation")
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()
