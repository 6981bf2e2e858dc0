"""Measure the demo: wall time of the whole run, wall time and peak memory per job,
and the planning time of the paper DAG.

    .venv/bin/python tools/measure_demo.py [--cores 2] [--keep DIR]

Runs in a private copy of the workflow (nothing in the checkout changes). Per-job
numbers come from the timing files that the rules' `benchmark:` directive writes to
logs/timing/ (s = wall seconds, max_rss = peak resident memory in MB).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.workflow import copy_workflow, snakemake  # noqa: E402


def per_job_table(workdir: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted((workdir / "logs" / "timing").rglob("*.tsv")):
        stats = pd.read_csv(tsv, sep="\t").iloc[0]
        job = str(tsv.relative_to(workdir / "logs" / "timing").with_suffix(""))
        rows.append({"job": job, "stage": job.split("/")[0], "wall_s": stats["s"], "peak_rss_mb": stats["max_rss"]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="2")
    parser.add_argument("--keep", type=Path, help="run here instead of a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        workdir = copy_workflow(args.keep or Path(scratch) / "demo")

        start = time.perf_counter()
        snakemake(workdir, "--cores", args.cores, timeout=3600)
        demo_s = time.perf_counter() - start

        start = time.perf_counter()
        snakemake(workdir, "-n", "--cores", "2", "--quiet", "rules", "--configfile", "configs/paper.yaml")
        plan_s = time.perf_counter() - start

        jobs = per_job_table(workdir)

    by_stage = jobs.groupby("stage").agg(
        jobs=("job", "count"),
        wall_s_total=("wall_s", "sum"),
        wall_s_max=("wall_s", "max"),
        peak_rss_mb_max=("peak_rss_mb", "max"),
    )
    pd.set_option("display.width", 120)
    print(f"demo wall time ({args.cores} cores): {demo_s:.1f} s")
    print(f"paper DAG planning (snakemake -n): {plan_s:.1f} s")
    print(
        f"largest peak memory of any job: {jobs['peak_rss_mb'].max():.0f} MB "
        f"({jobs.loc[jobs['peak_rss_mb'].idxmax(), 'job']})"
    )
    print("\nper stage:")
    print(by_stage.round(1).to_string())
    print("\nper job:")
    print(jobs.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
