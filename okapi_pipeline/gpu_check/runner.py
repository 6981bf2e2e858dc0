"""The parent side of the check: setup, then per model the build and its stages, each in
a process of its own with its own time limit (a hang or an out-of-memory error costs one
stage, not the run)."""

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from okapi_pipeline.gpu_check.report import finish, new_report
from okapi_pipeline.gpu_check.settings import REPO, load_config
from okapi_pipeline.gpu_check.shapes import (
    PPO_PROCESSES,
    PPO_ROUNDS,
    STEPS,
    THREADS,
    TIMEOUTS,
    chosen,
    model_builds,
)

log = logging.getLogger(__name__)


def stage_command(spec_path: Path) -> list[str]:
    """The command of a stage process: okapi_pipeline.gpu_check.stages on its spec."""
    return [sys.executable, "-m", "okapi_pipeline.gpu_check.stages", str(spec_path)]


def child_environment(device: dict, multi_gpu: bool) -> dict:
    """Offline, quiet, and on one GPU unless the stage is the multi-GPU one.

    With several GPUs visible, a single-process Trainer would wrap the model in
    DataParallel: a one-device stage must see one device.
    """
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRL_EXPERIMENTAL_SILENCE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if device.get("gpus", 0) >= 1 and not multi_gpu:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0] if visible else "0"
    return env


def log_error(log_path: Path) -> tuple[str, list[str]]:
    """The line that says what went wrong (the last exception line), and the log's tail."""
    lines = (
        [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        if log_path.exists()
        else []
    )
    tail = lines[-30:]
    errors = [line for line in lines if re.match(r"^\S*(Error|Exception|CheckFailed)\b|^\S+Error:", line)]
    return (errors[-1] if errors else (lines[-1] if lines else "no output")).strip(), tail


def run_child(name: str, spec: dict, work: Path, timeout: float, env: dict) -> dict:
    """Run one stage in a new process group; kill the whole group at the time limit."""
    for folder in ("specs", "logs", "results"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    slug = name.replace("/", "-")
    spec_path, log_path, result_path = (
        work / "specs" / f"{slug}.json",
        work / "logs" / f"{slug}.log",
        work / "results" / f"{slug}.json",
    )
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}, indent=1, default=str))
    started = time.perf_counter()
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            stage_command(spec_path), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
        try:
            process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # The group also holds what the stage started (accelerate's workers, vLLM's engine).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    result.update(wall_s=round(time.perf_counter() - started, 1), log=str(log_path))
    if timed_out:
        result.update(status="timeout", error=f"no result after the {timeout:.0f} s time limit")
    elif process.returncode:
        error, tail = log_error(log_path)
        result.update(status="failed", error=result.get("error") or error, log_tail=tail)
    else:
        result.setdefault("status", "ok")
    return result


def skip_reason(stage: str, device: dict) -> str | None:
    """Why a stage cannot run on this machine (None: it can)."""
    if stage == "evaluate_vllm":
        if not device.get("gpus"):
            return "vllm needs a CUDA GPU"
        if importlib.util.find_spec("vllm") is None:
            return "vllm is not installed"
    if stage == "sft_multi_gpu" and device.get("gpus", 0) < 2:
        return f"{device.get('gpus', 0)} GPU(s) visible; the accelerate relaunch needs 2 or more"
    return None


class Checker:
    """Runs the stages, each in a process of its own, and keeps their results in order."""

    def __init__(
        self,
        size: str,
        config: dict,
        work: Path,
        *,
        steps: int | None = None,
        ppo_rounds: int | None = None,
        ppo_processes: int | None = None,
        threads: int | None = None,
        stage_timeout: float | None = None,
        inject: list[str] = (),
    ):
        """Stages run with the size's steps, rounds, processes, threads and time limits
        unless one is given; `inject`: STAGE=fail or STAGE=hang items (to test the checker)."""
        self.work, self.stage_timeout = work, stage_timeout
        self.timeouts = TIMEOUTS[size]
        self.inject = dict(item.split("=", 1) for item in inject)
        if set(self.inject.values()) - {"fail", "hang"}:
            raise SystemExit("--inject takes STAGE=fail or STAGE=hang")
        self.common = {
            "size": size,
            "config": config,
            "threads": threads or THREADS[size],
            "work": str(work),
            "tokenizer_dir": str(work / "tokenizer"),
            "steps": steps or STEPS[size],
            "ppo_rounds": ppo_rounds or PPO_ROUNDS[size],
            "ppo_processes": ppo_processes or PPO_PROCESSES[size],
        }
        self.stages: list[dict] = []
        self.device: dict = {}

    def run(self, model: str, stage: str, **extra) -> dict:
        name = stage if model == "-" else f"{model}/{stage}"
        timeout = self.stage_timeout or self.timeouts.get(stage, self.timeouts["default"])
        log.info("%s ...", name)
        spec = {
            **self.common,
            **extra,
            "stage": stage,
            "model": model,
            "device": self.device,
            "inject": self.inject.get(stage),
        }
        result = run_child(name, spec, self.work, timeout, child_environment(self.device, stage == "sft_multi_gpu"))
        result.update(model=model, stage=stage)
        log.info(
            "%s: %s (%.1f s)%s",
            name,
            result["status"],
            result["wall_s"],
            f": {result['error']}" if result.get("error") else "",
        )
        self.stages.append(result)
        return result

    def skip(self, model: str, stage: str, reason: str) -> None:
        self.stages.append({"model": model, "stage": stage, "status": "skipped", "reason": reason})

    def run_all(self, builds: dict, wanted: list[str]) -> None:
        """Setup once; then per model: build, its stages, and the model removed (7B: 14 GB)."""
        setup = self.run("-", "setup")
        self.device = setup.get("device", {})
        if setup["status"] == "ok" and not self.device.get("gpus") and self.common["size"] != "tiny":
            log.warning(
                "no GPU visible: %s models on the CPU will reach the time limits (--tiny is the CPU size)",
                self.common["size"],
            )
        for model, build in builds.items():
            if setup["status"] != "ok":
                for stage in ("build", *wanted):
                    self.skip(model, stage, "the setup stage failed")
                continue
            model_dir = self.work / "models" / model
            built = self.run(model, "build", build=build, model_dir=str(model_dir))
            for stage in wanted:
                reason = skip_reason(stage, self.device) if built["status"] == "ok" else "the model could not be built"
                if reason:
                    self.skip(model, stage, reason)
                else:
                    self.run(model, stage, model_dir=str(model_dir), build=build)
            shutil.rmtree(model_dir, ignore_errors=True)


def run_check(
    size: str,
    out: Path | None = None,
    work: Path | None = None,
    record: Path | None = None,
    models: str | None = None,
    stages: str | None = None,
    **stage_options,
) -> int:
    """The whole check (tools/gpu_check.py): every model and stage asked for (comma-separated
    names; all by default), the JSON report at `out`, the table printed, the GPU rates
    appended to `record`. `stage_options`: Checker's. Returns the exit status: 1 when a
    stage failed or timed out."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = out or REPO / "results" / "gpu_check" / f"{size}.json"
    work = (work or REPO / "results" / "gpu_check" / size).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config, warning = load_config(size)
    if warning:
        log.warning("config: %s", warning)
    builds, wanted = chosen(size, model_builds(size, config), models, stages)
    checker = Checker(size, config, work, **stage_options)
    started = time.time()
    checker.run_all(builds, wanted)
    report = new_report(size, started, checker.device, warning, work, checker.stages)
    return finish(report, out, record)
