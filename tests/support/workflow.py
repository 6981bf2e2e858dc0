"""Running the workflow from tests: a private copy of the repository, configs as merged, dry-run parsing,
the scripts of tools/ as modules."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# What a run needs; results, caches and the venv stay behind.
WORKFLOW_FILES = [
    "Snakefile",
    "config.yaml",
    "configs",
    "rules",
    "scripts",
    "schemas",
    "envs",
    "prompts",
    "demo",
    "reference",
    "report",
    "slurm",
    ".test",
]


def copy_workflow(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target / name)
    return target


def merged(base: dict, override: dict) -> dict:
    """`override` merged over `base` as Snakemake merges a config file: nested mappings key
    by key, anything else replaced."""
    result = dict(base)
    for key, value in override.items():
        result[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return result


def merged_config(*configfiles: str) -> dict:
    """config.yaml with each of `configfiles` (paths from the repository root, e.g.
    `.test/config_dpo.yaml`) merged over it, as `--configfile` does; no schema defaults."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for path in configfiles:
        config = merged(config, yaml.safe_load((REPO / path).read_text()))
    return config


def snakemake(
    workdir: Path, *args: str, timeout: int = 1200, check: bool = True, env: dict | None = None, prefix: tuple = ()
) -> subprocess.CompletedProcess:
    """Run the snakemake CLI of this interpreter's environment in `workdir`.

    `prefix` wraps the command (e.g. `unshare --net` to run without any network).
    """
    run_env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(env or {}))
    command = [*prefix, sys.executable, "-m", "snakemake", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=run_env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


_RULE = re.compile(r"^\s*(?:local)?rule (\w+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def planned_jobs(output: str) -> set[tuple]:
    """The (rule, sorted wildcard items) of every job a dry run lists."""
    jobs, rule, wildcards = set(), None, ()
    for line in output.splitlines():
        if match := _RULE.match(line):
            if rule:
                jobs.add((rule, wildcards))
            rule, wildcards = match.group(1), ()
        elif rule and (match := _WILDCARDS.match(line)):
            items = (item.split("=", 1) for item in match.group(1).split(", "))
            wildcards = tuple(sorted((key, value) for key, value in items))
    if rule:
        jobs.add((rule, wildcards))
    return jobs


def job_counts(output: str) -> dict[str, int]:
    """The per-rule job counts of the table Snakemake prints before a run."""
    counts = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                counts[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                break
    return counts


def load_tool(name: str):
    """A script of tools/ imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / f"tools/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
