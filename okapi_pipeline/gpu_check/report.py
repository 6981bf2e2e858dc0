"""The check's report: the JSON, the printed table, and the rows it adds to the measured table."""

import json
import sys
import time
from pathlib import Path

from okapi_pipeline.gpu_check.measures import add_utilisation


def name_of(stage: dict) -> str:
    """A stage's name in messages: `model/stage`, or the stage alone for the setup."""
    return stage["stage"] if stage["model"] == "-" else f"{stage['model']}/{stage['stage']}"


def new_report(size: str, started: float, device: dict, warning: str | None, work: Path, stages: list[dict]) -> dict:
    """The JSON report of a run that started at `started` (time.time()); adds MFU to the stages."""
    add_utilisation(stages, device)
    failed = [name_of(stage) for stage in stages if stage["status"] in ("failed", "timeout")]
    return {
        "size": size,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "device": device,
        "config_warning": warning,
        "work": str(work),
        "stages": stages,
        "failed": failed,
        "ok": not failed,
    }


def finish(report: dict, out: Path, record: Path | None) -> int:
    """Write the report to `out`, print the table (and append the GPU rates to `record`);
    the exit status: 1, naming the stages, when any failed or timed out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    stages, failed = report["stages"], report["failed"]
    print(table(stages))
    if record:
        from okapi_pipeline.cluster.gpu_jobs import append_measurements, measurement_rows

        recorded = append_measurements(record, measurement_rows(report))
        print(f"{recorded} row(s) appended to {record}" + ("" if recorded else " (no GPU stage measured)"))
    summary = report["device"].get("summary", "no device facts")
    print(f"\n{report['size']}: {summary}; {report['wall_s']} s in all; JSON: {out}")
    if failed:
        print(
            "gpu_check: FAILED: "
            + "; ".join(f"{name_of(s)} ({s['status']}: {s.get('error')})" for s in stages if name_of(s) in failed),
            file=sys.stderr,
        )
        return 1
    return 0


def table(stages: list[dict]) -> str:
    """The printed summary: one row per stage."""
    import pandas as pd

    def number(value, digits=1):
        return "" if value is None else f"{value:,.{digits}f}"

    rows = []
    for stage in stages:
        identical = stage.get("frozen_identical")
        rows.append(
            {
                "model": stage["model"],
                "stage": stage["stage"],
                "status": stage["status"],
                "tokens/s": number(stage.get("tokens_per_s"), 0),
                "step s": number(stage.get("step_time_s"), 3),
                "items/s": number(stage.get("items_per_s")),
                "peak GB": number(stage.get("peak_memory_gb"), 2),
                "memory": stage.get("memory_kind", ""),
                "MFU %": number(100 * stage["mfu"]) if stage.get("mfu") is not None else "",
                "dtype": stage.get("compute_dtype", ""),
                "frozen same": "" if identical is None else ("yes" if identical else "NO"),
                "wall s": number(stage.get("wall_s")),
                "note": (stage.get("error") or stage.get("reason") or stage.get("note") or "")[:70],
            }
        )
    return pd.DataFrame(rows).to_string(index=False)
