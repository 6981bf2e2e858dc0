"""What a run asks of a SLURM cluster: jobs per rule and GPU hours per stage.

    python tools/plan_cluster.py                       # the paper, through slurm/
    python tools/plan_cluster.py --configfile configs/paper.yaml --remaining
    python tools/plan_cluster.py --configfile configs/paper.yaml \
        --configfile configs/paper.yaml configs/paper-release.yaml   # two runs side by side

Reads the jobs and their resources from a Snakemake dry run with the profile (the
resources SLURM will be asked for on a first attempt: the rules size them from each
model's parameter count, the profile adds partitions), which rules run on the login
node from the workflow, and how many shards share a SLURM job from the profile's
`group-components`. Submits nothing, needs no cluster and no network.
A stage is the rules file a rule is defined in (rules/translate.smk: translate).
"""

import argparse
import functools
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Jobs of a group job (local models' shards) are listed indented under it.
_JOB = re.compile(r"^\s*(?:local)?rule (\w+):$")
_RESOURCES = re.compile(r"^\s+resources: (.*)$")
_RESOURCE = re.compile(r"(\w+)=([^,]*)")
_GROUP = re.compile(r"^(?:\[.*\] )?Group job (\S+) ")


@dataclass
class RulePlan:
    rule: str
    stage: str
    local: bool
    jobs: int = 0
    slurm_jobs: int = 0
    gpus: set = field(default_factory=set)
    gpu_hours: float = 0.0
    runtimes_h: set = field(default_factory=set)
    group: str | None = None
    basis: set = field(default_factory=set)  # what the runtimes rest on


def dry_run_jobs(profile: str, configfiles: list[str], forceall: bool) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry run through the profile lists; a job listed
    under a group job carries the group's name as resources["_group"]."""
    command = [sys.executable, "-m", "snakemake", "--dry-run", "--profile", profile, "--configfile", *configfiles]
    if forceall:
        command.append("--forceall")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"the dry run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    jobs, rule, group = [], None, None
    for line in result.stdout.splitlines():
        if match := _GROUP.match(line):
            group = match.group(1)
        elif match := _JOB.match(line):
            rule = match.group(1)
            if not line[0].isspace():
                group = None
        elif rule and (match := _RESOURCES.match(line)):
            resources = dict(_RESOURCE.findall(match.group(1)))
            if group:
                resources["_group"] = group
            jobs.append((rule, resources))
            rule = None
    return jobs


def workflow_rules(configfiles: list[str]) -> tuple[dict[str, dict], dict]:
    """Per rule: its stage, whether it runs on the login node, and its group, for this
    config; and the config as the workflow validated it. Read once per set of config files
    (the plan, the API dollars and the summary all ask)."""
    return _workflow_rules(tuple(configfiles))


@functools.cache
def _workflow_rules(configfiles: tuple[str, ...]) -> tuple[dict[str, dict], dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    # The rules as this config defines them; `localrule:` may depend on config.
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            snakefile=REPO / "Snakefile",
            workdir=REPO,
            config_settings=ConfigSettings(configfiles=[REPO / path for path in configfiles]),
            resource_settings=ResourceSettings(),
            storage_settings=StorageSettings(),
        )._workflow
        rules = {
            rule.name: {
                "stage": Path(rule.snakefile).stem if Path(rule.snakefile).name != "Snakefile" else "all",
                # What Snakemake's own is_local says on a cluster (it says "local" to all in a dry run).
                "localrule": rule.name in workflow._localrules or rule.norun,
                "group": rule.group,
            }
            for rule in workflow.rules
        }
        return rules, dict(workflow.config)


def runtime_bases(config: dict) -> dict[str, set]:
    """Per GPU rule: what its runtimes rest on (measured, extrapolated from which row,
    assumed), over the models it runs for (hub models of a known size)."""
    from okapi_pipeline.cluster.gpu_jobs import GPU_RULES, gpu_job, read_measurements

    measurements = read_measurements(REPO / "reference" / "gpu_measurements.csv")
    sizes = [entry["parameters"] for entry in config["base_models"].values() if entry.get("parameters")]
    return {
        rule: {gpu_job(stage, parameters, config, measurements)["basis"].split(" on ")[0] for parameters in sizes}
        for rule, stage in GPU_RULES.items()
    }


def profile_groups(profile: str) -> tuple[dict[str, str], dict[str, int]]:
    """The profile's rule -> group overrides and group -> components."""
    from snakemake.profiles import ProfileConfigFileParser

    with open(REPO / profile / "config.yaml") as stream:
        settings = ProfileConfigFileParser().parse(stream)
    groups = dict(item.split("=", 1) for item in settings.get("groups", []))
    components = dict(item.split("=", 1) for item in settings.get("group-components", []))
    return groups, {group: int(n) for group, n in components.items()}


def gpus_asked(resources: dict) -> int:
    """The GPUs of a job's resources: `gpu: N`, or `gres: gpu:N` / `gpu:TYPE:N` (site.gpu_request: gres)."""
    gres = resources.get("gres", "")
    if gres.startswith("gpu:"):
        return int(gres.rsplit(":", 1)[1])
    return int(resources.get("gpu", 0) or 0)


def plan(profile: str, configfiles: list[str], forceall: bool = True) -> list[RulePlan]:
    rules, config = workflow_rules(configfiles)
    bases = runtime_bases(config)
    groups, components = profile_groups(profile)
    plans: dict[str, RulePlan] = {}
    for rule, resources in dry_run_jobs(profile, configfiles, forceall):
        group = groups.get(rule) or resources.get("_group") or rules[rule]["group"]
        local = rules[rule]["localrule"] and group is None
        basis = bases.get(rule, {"assumed"})
        entry = plans.setdefault(rule, RulePlan(rule, rules[rule]["stage"], local, group=group, basis=basis))
        entry.jobs += 1
        if local:
            continue
        gpus = gpus_asked(resources)
        hours = int(resources.get("runtime", 0) or 0) / 60
        entry.gpus.add(gpus)
        entry.runtimes_h.add(hours)
        entry.gpu_hours += gpus * hours
    for entry in plans.values():
        if not entry.local:
            group = entry.group
            entry.slurm_jobs = math.ceil(entry.jobs / components.get(group, 1)) if group else entry.jobs
    return sorted(plans.values(), key=lambda p: (p.local, p.stage, p.rule))


def _span(values: set, fmt: str) -> str:
    """One value, or the least and the most (a joint job asks for more than the others)."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def report(plans: list[RulePlan]) -> str:
    import pandas as pd

    rules = pd.DataFrame(
        {
            "rule": p.rule,
            "stage": p.stage,
            "jobs": p.jobs,
            "runs on": "login node" if p.local else "SLURM",
            "SLURM jobs": p.slurm_jobs,
            "GPUs/job": _span(p.gpus, "{}"),
            "hours/job": _span(p.runtimes_h, "{:.3g}"),
            "GPU hours": round(p.gpu_hours),
            "runtime from": "; ".join(sorted(p.basis)) if p.gpu_hours else "",
        }
        for p in plans
    )
    stages = rules.groupby("stage")[["jobs", "SLURM jobs", "GPU hours"]].sum()
    stages = stages.sort_values("GPU hours", ascending=False)
    stages.loc["total"] = stages.sum()
    return rules.to_string(index=False) + "\n\n" + stages.to_string()


# ---- API dollars, and runs side by side ---------------------------------------------------


def api_dollars(configfiles: list[str]) -> dict[str, float]:
    """USD per API stage by the cost estimate (okapi_pipeline.report.cost.config_estimate), with the
    demo's English records standing in for the record length, and the demo's seed tasks
    until fetch_seed_tasks has fetched the configured ones. A released split costs nothing."""
    import contextlib

    from okapi_pipeline.report.cost import config_estimate

    _, config = workflow_rules(configfiles)
    with contextlib.chdir(REPO):
        if not Path(config["self_instruct"]["seed_tasks"]).exists():
            config = {**config, "self_instruct": {**config["self_instruct"], "seed_tasks": "demo/seed_tasks.jsonl"}}
        rows = config_estimate(config, "demo/instructions.jsonl")
    dollars: dict[str, float] = {}
    for row in rows:
        dollars[row["stage"]] = dollars.get(row["stage"], 0.0) + row["usd"]
    return dollars


# OpenAI's Batch API charges half its online prices; the cost estimate counts online prices.
BATCH_PRICE_SHARE = 0.5
# The GPU stages in the order one language's jobs wait for each other (PPO and DPO side by side).
GPU_CHAIN = (
    ("train_sft",),
    ("generate_responses",),
    ("train_reward_model", "train_dpo"),
    ("train_ppo",),
    ("evaluate",),
)


def longest_gpu_chain_hours(plans: list[RulePlan]) -> float:
    """The wall-clock of the GPU jobs when each gets its GPUs at once: the longest job of each
    stage, one stage after the other (the API stages before them are not counted)."""
    longest = {p.rule: max(p.runtimes_h, default=0) for p in plans if not p.local}
    return sum(max((longest.get(rule, 0) for rule in stage), default=0) for stage in GPU_CHAIN)


def trained_model_terabytes(config: dict) -> float:
    """The trained models' folders: fp32 weights (4 bytes a parameter) of the SFT model, the
    reward model (with PPO) and each method's model, per model and training unit."""
    methods = config["rlhf"]["methods"]
    stages = 1 + ("ppo" in methods) + len(methods)
    units = len(config["languages"]) * ("per_language" in config["training"]["scope"])
    units += "joint" in config["training"]["scope"]
    sizes = [config["base_models"][name].get("parameters") or 0 for name in config["models"]]
    return 4 * sum(sizes) * stages * units / 1e12


def run_summary(plans: list[RulePlan], dollars: dict[str, float], config: dict):
    """One run as a column: SLURM jobs, GPU hours per stage and in all, the longest chain of
    GPU jobs, the trained models' disk, API dollars per stage, in all and in batch mode."""
    import pandas as pd

    hours: dict[str, float] = {}
    for p in plans:
        hours[p.stage] = hours.get(p.stage, 0.0) + p.gpu_hours
    rows = {"SLURM jobs": sum(p.slurm_jobs for p in plans)}
    rows |= {f"GPU hours: {stage}": round(h) for stage, h in hours.items() if h}
    rows["GPU hours: total"] = round(sum(hours.values()))
    rows["hours: longest chain of GPU jobs"] = round(longest_gpu_chain_hours(plans))
    rows["TB: trained models (fp32)"] = round(trained_model_terabytes(config), 1)
    rows |= {f"API $: {stage}": round(usd) for stage, usd in dollars.items()}
    rows["API $: total"] = round(sum(dollars.values()))
    rows["API $: total in batch mode"] = round(BATCH_PRICE_SHARE * sum(dollars.values()))
    return pd.Series(rows)


def side_by_side(runs: dict[str, tuple[list[RulePlan], dict[str, float], dict]]) -> str:
    """Several runs (name -> plans, API dollars and config), a column each."""
    import pandas as pd

    columns = [run_summary(*run).rename(name) for name, run in runs.items()]
    return pd.concat(columns, axis=1, sort=False).fillna(0).map(lambda value: f"{value:g}").to_string()


def gpu_layouts(configfiles: list[str], memories=(80, 141)) -> str:
    """GPUs per training job of each base model of the config on cards of each size (the
    fewest that hold it: okapi_pipeline.cluster.gpu_layout), and the modelled GB a card."""
    import pandas as pd

    from okapi_pipeline.cluster.gpu_layout import Shape, smallest_fit

    _, config = workflow_rules(configfiles)
    rows = []
    for name in config["models"]:
        parameters = config["base_models"][name].get("parameters")
        for memory in memories if parameters else ():
            row = {"model": name, "card": f"{memory} GB"}
            for stage in ("sft", "reward_model", "ppo", "dpo"):
                gpus, per_gpu = smallest_fit(
                    stage, Shape.from_parameters(parameters), config[stage], memory, config["site"]["gpus_per_node"]
                )
                row[stage] = f"{gpus} ({per_gpu:.0f} GB)"
            rows.append(row)
    return pd.DataFrame(rows).to_string(index=False) if rows else "no base model of a known size"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configfile",
        nargs="+",
        action="append",
        help="config file(s), relative to the repository (default: configs/paper.yaml); "
        "give --configfile again for another run, shown side by side",
    )
    parser.add_argument("--profile", default="slurm", help="the SLURM profile (default: slurm)")
    parser.add_argument(
        "--remaining", action="store_true", help="only the jobs that still have to run (default: the whole run)"
    )
    parser.add_argument(
        "--layouts", action="store_true", help="GPUs per training job on 80 and 141 GB cards, instead of the plan"
    )
    args = parser.parse_args(argv)
    runs = args.configfile or [["configs/paper.yaml"]]
    if args.layouts:
        for files in runs:
            print(f"GPUs per training job (the modelled peak on each) of {' + '.join(files)}:\n")
            print(gpu_layouts(files))
        return
    if len(runs) > 1:
        print(f"Side by side through {args.profile}/ (first attempts; API dollars by the cost estimate):\n")
        summaries = {
            " + ".join(files): (
                plan(args.profile, files, forceall=not args.remaining),
                api_dollars(files),
                workflow_rules(files)[1],
            )
            for files in runs
        }
        print(side_by_side(summaries))
        return
    [files] = runs
    plans = plan(args.profile, files, forceall=not args.remaining)
    print(
        f"{'What remains of' if args.remaining else 'The whole of'} {' + '.join(files)} "
        f"through {args.profile}/ (first attempts; a retry asks for more time):\n"
    )
    print(report(plans))
    dollars = api_dollars(files)
    print(
        f"\nAPI dollars (cost estimate): {', '.join(f'{k} {v:,.0f}' for k, v in dollars.items())}; "
        f"total {sum(dollars.values()):,.0f}"
    )


if __name__ == "__main__":
    main()
