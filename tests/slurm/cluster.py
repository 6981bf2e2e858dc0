"""A real single-node SLURM cluster for tests, and running Snakemake through the profile on it.

`start_cluster.sh` / `stop_cluster.sh` (beside this file) bring the cluster up and
down; an `sbatch` wrapper (bin/sbatch) put first on PATH logs every submission with
what SLURM recorded for the job.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAEMONS = ("slurmctld", "slurmd", "munged")


def missing_requirements() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [
        name
        for name in (*DAEMONS, "sbatch", "squeue", "scontrol")
        if shutil.which(name) is None and not Path("/usr/sbin", name).exists()
    ]
    if missing:
        return (
            f"SLURM not installed ({', '.join(missing)} missing): "
            "apt-get install -y slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "starting a SLURM cluster needs root"
    return None


@dataclass
class SlurmCluster:
    """A running test cluster: how to submit to it and what was submitted."""

    state: Path
    sbatch_log: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment Snakemake runs in: the logging sbatch first, partitions as a user sets them."""
        return dict(
            os.environ,
            PATH=f"{HERE / 'bin'}{os.pathsep}{os.environ['PATH']}",
            OKAPI_SBATCH_LOG=str(self.sbatch_log),
            SBATCH_PARTITION="cpu",
            OKAPI_GPU_PARTITION="gpu",
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
        )

    # There is no accounting database: job states come from squeue (the cluster keeps
    # finished jobs for MinJobAge=300 s, over 3 x the wait before the first check), or
    # from bin/sacct, which answers from squeue in sacct's words.
    snakemake_args = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")

    def snakemake_command(self, *args: str, timeout: int = 900) -> list[str]:
        """`snakemake --profile slurm ARGS` on this cluster, killed at the timeout.

        Snakemake ignores SIGTERM while it waits on cluster jobs, so it is killed with SIGKILL.
        """
        profile_args = ("--profile", "slurm", *self.snakemake_args, *args)
        return ["timeout", "-s", "KILL", str(timeout), sys.executable, "-m", "snakemake", *profile_args]

    def snakemake(
        self, workdir: Path, *args: str, timeout: int = 900, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run `snakemake --profile slurm ARGS` in `workdir` to its end (in `env`, else self.env)."""
        command = self.snakemake_command(*args, timeout=timeout)
        return subprocess.run(command, cwd=workdir, env=env or self.env, capture_output=True, text=True)

    def job_id(self, comment: str) -> str:
        """The SLURM id of the last job submitted with --comment `comment` (rule and wildcards)."""
        [*_, last] = [s for s in self.submissions() if comment_of(s) == comment]
        return last["stdout"].strip().split(";")[0]

    def submissions(self) -> list[dict]:
        """Every sbatch call so far: args, returncode, stdout, stderr and SLURM's `job` record."""
        if not self.sbatch_log.exists():
            return []
        return [json.loads(line) for line in self.sbatch_log.read_text().splitlines()]


def comment_of(submission: dict) -> str:
    """A submission's --comment: its rule and wildcards, e.g. rule_train_sft_wildcards_vi."""
    args = submission["args"]
    return args[args.index("--comment") + 1]


def _run_script(name: str, state: Path) -> None:
    result = subprocess.run(
        [str(HERE / name)], env=dict(os.environ, OKAPI_SLURM_STATE=str(state)), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def start(state: Path) -> SlurmCluster:
    """Start the cluster with its state, logs and sbatch log in `state`."""
    _run_script("start_cluster.sh", state)
    return SlurmCluster(state=state, sbatch_log=state / "sbatch.jsonl")


def stop(cluster: SlurmCluster) -> None:
    """Stop the cluster and check that its daemons are gone."""
    pids = [int(path.read_text()) for path in cluster.state.glob("slurm*.pid") if path.read_text().strip()]
    _run_script("stop_cluster.sh", cluster.state)
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    if alive:
        raise RuntimeError(f"SLURM daemons still running after stop_cluster.sh: {alive}")
