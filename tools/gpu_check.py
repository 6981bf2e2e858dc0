"""Check and time every GPU path of the pipeline in one command.

    python tools/gpu_check.py --size 1b     # LLaMA- and BLOOM-shaped ~1B models: the quick GPU pass
    python tools/gpu_check.py --size 7b     # LLaMA-7B, BLOOM-7B1, Qwen2.5-7B, Llama-3.1-8B shapes
    python tools/gpu_check.py --tiny        # the demo's model sizes, on CPU (part of the tests)

Random-weight models of the real architecture and size are built locally (no hub)
with the demo tokenizer, saved, and loaded by the project's own loaders exactly as a
hub model would be. Then, per model, each stage runs in a process of its own with its
own time limit, so that a hang or an out-of-memory error costs one stage, not the run:

  sft, reward_model, ppo, dpo   a few optimizer steps (PPO: one round) through
                                okapi_pipeline.training.launch.run_stage with the paper's settings
                                (configs/paper.yaml; --tiny: config.yaml); only the step
                                count and the data size are changed
  evaluate_hf, evaluate_vllm    okapi_pipeline.evaluation.evaluate on the demo benchmarks (one
                                language), lm-eval batch size as configured (paper: auto)
  generate                      okapi_pipeline.data.generation.generate_responses, K per prompt
  sft_multi_gpu                 SFT through the accelerate relaunch (FSDP), with 2+ GPUs

Every training stage starts from the random base model (the reward and value models
are the base model with a fresh one-logit head), so the stages do not depend on each
other. The training data are cut from the demo corpus so that every sequence fills
the configured max length: the memory peak is the worst case of the real run.

Per stage it reports tokens/s, step time (median over the steps after the first),
peak memory (torch's peak allocation on a GPU, the process's peak RSS on CPU), for
SFT, the reward model and DPO the model FLOPs utilisation (`training_flops_per_token`),
items/s for evaluation; and it checks that the
training forward computes in bf16 where the GPU supports it (float32 elsewhere) and
that every weight below the top trainable blocks is bit-identical after training.
One JSON (--out) and a printed table; the exit status is 1 when a stage failed or
timed out, and the failed stages are named.

Disk: the base model in bf16 plus one stage's saved output in fp32 at a time
(1B: about 7 GB; 7B: about 45 GB). With 2+ GPUs the FSDP SFT run also writes a full
checkpoint with optimizer state (7B: about 85 GB more).
"""

import argparse
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The GPUs' dense bf16 peaks, for the model FLOPs utilisation (unknown devices get none).
from okapi_pipeline.cluster.gpu_jobs import peak_tflops  # noqa: E402  (this checkout's package)

log = logging.getLogger("gpu_check")

# ---- what is checked --------------------------------------------------------------------

# Real shapes. Models are built with the real vocabulary size: the demo tokenizer uses
# only its first ids, but the embedding and output layers (1B of BLOOM-7B1's 7B
# parameters) cost what they cost in the real run.
SHAPES = {
    "1b": {
        # TinyLlama-like width with LLaMA's head size of 128: 1.06B parameters.
        "llama-1b": {
            "architecture": "llama",
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_layers": 18,
            "num_heads": 16,
            "vocab_size": 32000,
        },
        # bigscience/bloom-1b1: 1.07B parameters.
        "bloom-1b1": {
            "architecture": "bloom",
            "hidden_size": 1536,
            "num_layers": 24,
            "num_heads": 16,
            "vocab_size": 250880,
        },
    },
    "7b": {
        "llama-7b": {
            "architecture": "llama",
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_layers": 32,
            "num_heads": 32,
            "vocab_size": 32000,
        },
        "bloom-7b1": {
            "architecture": "bloom",
            "hidden_size": 4096,
            "num_layers": 30,
            "num_heads": 32,
            "vocab_size": 250880,
        },
        # Today's base models (configs/modern.yaml), from their config.json: grouped-query
        # attention and output layers not tied to the embeddings. `--models
        # qwen2.5-7b,llama-3.1-8b` for these alone. Built with the demo tokenizer and the
        # tiny models' position table; rope settings do not change the cost.
        # Qwen/Qwen2.5-7B: 7.62B parameters.
        "qwen2.5-7b": {
            "architecture": "qwen2",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_layers": 28,
            "num_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
        },
        # meta-llama/Llama-3.1-8B: 8.03B parameters.
        "llama-3.1-8b": {
            "architecture": "llama",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_layers": 32,
            "num_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
        },
    },
}
MODEL_STAGES = ("sft", "reward_model", "ppo", "dpo", "evaluate_hf", "evaluate_vllm", "generate", "sft_multi_gpu")
TRAINING_STAGES = ("sft", "reward_model", "ppo", "dpo")
# Seconds per stage: generous for the size, so that only a real hang reaches them.
TIMEOUTS = {
    "tiny": {"default": 300},
    "1b": {"default": 240, "ppo": 360, "evaluate_vllm": 360, "sft_multi_gpu": 360},
    "7b": {"default": 600},
}
# Optimizer steps of SFT, reward model and DPO; PPO rounds (a round: rollouts, then
# num_ppo_epochs passes over them in minibatches).
STEPS = {"tiny": 3, "1b": 3, "7b": 3}
PPO_ROUNDS = {"tiny": 1, "1b": 1, "7b": 1}
# The processes the configured PPO batches are shared by: the original ran PPO in 7
# processes (configs/paper.yaml: 896 rollouts and minibatches of 7 = 7 x 128 and 7 x 1),
# and a one-GPU stage runs one process's share, so each GPU sees the original's load.
PPO_PROCESSES = {"tiny": 1, "1b": 7, "7b": 7}
# Prompts of the generation stage: enough for the memory-sized batches of a GPU to fill
# (a 7B model on 80 GB takes about 48 prompts a batch), so the rate is the stage's own.
GENERATION_PROMPTS = {"tiny": 8, "1b": 256, "7b": 128}
# torch threads per stage: one on a small shared CPU (oversubscribed threads only wait),
# all cores beside a GPU.
THREADS = {"tiny": 1, "1b": os.cpu_count(), "7b": os.cpu_count()}


def training_flops_per_token(stage: str, parameters: int, trainable: int) -> int:
    """Model FLOPs a training step spends on one token: the forward (2 x parameters), the
    backward through the activations (2 x parameters: the gradient reaches the embeddings,
    which train in the paper config) and the weight gradients of what trains (2 x trainable
    parameters); 6 x parameters when everything trains (SFT). DPO adds its frozen reference
    model's forward (2 x parameters, a third more for a fully trained model). A token of a
    reward model or DPO is one of a pair's chosen or rejected sequence. Attention scores
    are left out, as in the usual 6 x parameters."""
    flops = 4 * parameters + 2 * trainable
    return flops + 2 * parameters if stage == "dpo" else flops


def model_flops_utilisation(flops_per_token: int, tokens_per_s: float, device_name: str, gpus: int) -> float | None:
    """flops_per_token x tokens/s over the devices' bf16 peak."""
    peak = peak_tflops(device_name)
    if not (peak and flops_per_token and tokens_per_s):
        return None
    return flops_per_token * tokens_per_s / (peak * 1e12 * gpus)


# ---- settings -------------------------------------------------------------------------------


def merge(base: dict, override: dict) -> dict:
    """`override` merged into `base` key by key, as snakemake merges --configfile over config.yaml."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def load_config(size: str) -> tuple[dict, str | None]:
    """config.yaml (--tiny) or configs/paper.yaml over it, with the schema's defaults; and a warning.

    When the config does not validate (a key the schema does not know yet, while one of
    them is being changed) the check still runs on the merged config, with a warning.
    """
    from okapi_pipeline.config import ConfigError, _set_defaults, load_schema, validate_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if size != "tiny":
        config = merge(config, yaml.safe_load((REPO / "configs/paper.yaml").read_text()))
    schema = load_schema(REPO / "schemas/config.schema.yaml")
    try:
        return validate_config(config, schema), None
    except ConfigError as error:
        _set_defaults(config, schema)
        return config, f"{error}; measured with the config as written"


def model_builds(size: str, config: dict) -> dict:
    """Model name -> build settings: the demo's base models for --tiny, else SHAPES."""
    if size == "tiny":
        return {name: entry["build"] for name, entry in config["base_models"].items() if "build" in entry}
    return SHAPES[size]


def training_settings(
    config: dict, stage: str, steps: int, ppo_rounds: int, ppo_processes: int = 1
) -> tuple[dict, int]:
    """A training stage's configured settings cut to a few steps, and the examples that takes.

    One epoch over exactly `steps` effective batches, nothing held out (evaluation is
    not what is timed). PPO: `ppo_rounds` rounds of one process's share of the configured
    rollouts and minibatch (see PPO_PROCESSES); the schedule is read from the keys the
    block has (`rounds`, or the older `total_episodes`).
    """
    # As the training scripts hand it: the stage's block and where the logs are reported.
    settings = dict(config[stage], report_to=config["training"]["report_to"])
    if stage != "ppo":
        settings.update(epochs=1, held_out_fraction=0.0)
        return settings, steps * settings["effective_batch_size"]
    if settings["rollout_batch_size"] % ppo_processes == 0 and settings["mini_batch_size"] % ppo_processes == 0:
        settings["rollout_batch_size"] //= ppo_processes
        settings["mini_batch_size"] //= ppo_processes
    rollouts = settings["rollout_batch_size"]
    if "total_episodes" in settings:
        settings["total_episodes"] = ppo_rounds * rollouts
    else:
        settings["rounds"] = ppo_rounds
    return settings, ppo_rounds * rollouts


# ---- the parent: one process per stage ----------------------------------------------------


def stage_command(spec_path: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]


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
    import importlib.util

    if stage == "evaluate_vllm":
        if not device.get("gpus"):
            return "vllm needs a CUDA GPU"
        if importlib.util.find_spec("vllm") is None:
            return "vllm is not installed"
    if stage == "sft_multi_gpu" and device.get("gpus", 0) < 2:
        return f"{device.get('gpus', 0)} GPU(s) visible; the accelerate relaunch needs 2 or more"
    return None


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:6]),
    )
    parser.add_argument("--size", choices=["tiny", "1b", "7b"], default="1b")
    parser.add_argument("--tiny", action="store_true", help="the demo's model sizes (same as --size tiny)")
    parser.add_argument("--out", type=Path, help="the JSON report (default results/gpu_check/SIZE.json)")
    parser.add_argument("--work", type=Path, help="models, data, logs (default results/gpu_check/SIZE/)")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="TABLE",
        help="append the GPU stages' rates to the measured table (reference/gpu_measurements.csv)",
    )
    parser.add_argument("--models", help="comma-separated model names (default: every model of the size)")
    parser.add_argument("--stages", help=f"comma-separated stages (default: {','.join(MODEL_STAGES)})")
    parser.add_argument("--steps", type=int, help="optimizer steps of SFT, reward model and DPO")
    parser.add_argument("--ppo-rounds", type=int, help="PPO rounds (rollouts, then the PPO epochs over them)")
    parser.add_argument(
        "--ppo-processes",
        type=int,
        help="processes the configured PPO batches are shared by (default: 7 for the paper)",
    )
    parser.add_argument("--threads", type=int, help="torch threads per stage (default: 1 for --tiny, else all)")
    parser.add_argument("--stage-timeout", type=float, help="seconds per stage, for every stage")
    parser.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="STAGE=fail|hang",
        help="make a stage fail or hang (to test the checker itself)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.tiny:
        options.size = "tiny"
    return options


class Checker:
    """Runs the stages, each in a process of its own, and keeps their results in order."""

    def __init__(self, options, size: str, config: dict, work: Path):
        self.options, self.work = options, work
        self.timeouts = TIMEOUTS[size]
        self.inject = dict(item.split("=", 1) for item in options.inject)
        if set(self.inject.values()) - {"fail", "hang"}:
            raise SystemExit("--inject takes STAGE=fail or STAGE=hang")
        self.common = {
            "size": size,
            "config": config,
            "threads": options.threads or THREADS[size],
            "work": str(work),
            "tokenizer_dir": str(work / "tokenizer"),
            "steps": options.steps or STEPS[size],
            "ppo_rounds": options.ppo_rounds or PPO_ROUNDS[size],
            "ppo_processes": options.ppo_processes or PPO_PROCESSES[size],
        }
        self.stages: list[dict] = []
        self.device: dict = {}

    def run(self, model: str, stage: str, **extra) -> dict:
        name = stage if model == "-" else f"{model}/{stage}"
        timeout = self.options.stage_timeout or self.timeouts.get(stage, self.timeouts["default"])
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


def chosen(options, builds: dict) -> tuple[dict, list[str]]:
    """The models and stages asked for (all by default)."""
    wanted = options.stages.split(",") if options.stages else list(MODEL_STAGES)
    unknown = set(wanted) - set(MODEL_STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown))} (known: {', '.join(MODEL_STAGES)})")
    names = options.models.split(",") if options.models else list(builds)
    missing = set(names) - set(builds)
    if missing:
        raise SystemExit(
            f"unknown model(s) for --size {options.size}: {', '.join(sorted(missing))} (known: {', '.join(builds)})"
        )
    return {name: builds[name] for name in names}, wanted


def main(argv=None) -> int:
    options = parse_args(argv)
    if options.child:
        return child_main(options.child)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    size = options.size
    out = options.out or REPO / "results" / "gpu_check" / f"{size}.json"
    work = (options.work or REPO / "results" / "gpu_check" / size).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config, warning = load_config(size)
    if warning:
        log.warning("config: %s", warning)
    builds, wanted = chosen(options, model_builds(size, config))
    checker = Checker(options, size, config, work)
    started = time.time()
    checker.run_all(builds, wanted)

    stages, device = checker.stages, checker.device
    add_utilisation(stages, device)
    failed = [name_of(stage) for stage in stages if stage["status"] in ("failed", "timeout")]
    report = {
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(table(stages))
    if options.record:
        from okapi_pipeline.cluster.gpu_jobs import append_measurements, measurement_rows

        recorded = append_measurements(options.record, measurement_rows(report))
        print(f"{recorded} row(s) appended to {options.record}" + ("" if recorded else " (no GPU stage measured)"))
    print(f"\n{size}: {device.get('summary', 'no device facts')}; {report['wall_s']} s in all; JSON: {out}")
    if failed:
        print(
            "gpu_check: FAILED: "
            + "; ".join(f"{name_of(s)} ({s['status']}: {s.get('error')})" for s in stages if name_of(s) in failed),
            file=sys.stderr,
        )
        return 1
    return 0


def name_of(stage: dict) -> str:
    return stage["stage"] if stage["model"] == "-" else f"{stage['model']}/{stage['stage']}"


def add_utilisation(stages: list[dict], device: dict) -> None:
    """MFU of the stages that train on tokens of their own data (PPO's rounds are mostly generation)."""
    for stage in stages:
        if stage["stage"] in ("sft", "sft_multi_gpu", "reward_model", "dpo") and stage["status"] == "ok":
            flops = training_flops_per_token(stage["stage"], stage["parameters"], stage["trainable_parameters"])
            stage["flops_per_token"] = flops
            stage["mfu"] = model_flops_utilisation(
                flops, stage.get("tokens_per_s"), (device.get("names") or [None])[0], stage.get("processes", 1)
            )


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


# ---- the child: one stage in this process -----------------------------------------------


def child_main(spec_path: Path) -> int:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("inject") == "fail":
        raise SystemExit(f"RuntimeError: {spec['stage']}: failure injected with --inject")
    if spec.get("inject") == "hang":
        time.sleep(10**6)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    poller = DeviceMemoryPoller() if spec["device"].get("gpus") else None
    result = CHILD_STAGES[spec["stage"]](spec)
    result.update(peak_memory(poller))
    problems = result.pop("problems", [])
    if problems:
        result.update(status="failed", error="; ".join(problems))
    Path(spec["result"]).write_text(json.dumps(result, indent=1, default=str))
    if problems:
        print(f"CheckFailed: {result['error']}", file=sys.stderr)
        return 1
    return 0


def setup_stage(spec: dict) -> dict:
    """What the machine has (torch, CUDA, GPUs, bf16), and the demo tokenizer."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from okapi_pipeline.tiny.tokenizers import train_tokenizer

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = [torch.cuda.get_device_name(index) for index in range(gpus)]
    device = {
        "gpus": gpus,
        "names": names,
        "bf16": bool(gpus and torch.cuda.is_bf16_supported()),
        "memory_gb": [round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1) for i in range(gpus)],
        "bf16_peak_tflops": peak_tflops(names[0]) if names else None,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    for package in ("transformers", "trl", "accelerate", "lm_eval", "vllm", "deepspeed"):
        try:
            device[package] = version(package)
        except PackageNotFoundError:
            device[package] = None
    device["summary"] = (
        f"{gpus} x {names[0]} ({device['memory_gb'][0]} GB), bf16 {device['bf16']}"
        if gpus
        else f"CPU only ({device['cpus']} cores)"
    ) + f", torch {torch.__version__}"
    vocab = spec["config"]["tiny_models"]["vocab_size"]
    train_tokenizer(REPO / spec["config"]["tiny_models"]["corpus"], spec["tokenizer_dir"], vocab)
    return {"device": device, "note": device["summary"]}


def build_stage(spec: dict) -> dict:
    """A random-weight model of the given shape, saved like a hub checkpoint.

    On a GPU it is built there, in bf16 (a 7B model in fp32 on the CPU would take 28 GB
    and minutes); the training stages load it as fp32 weights, as they would a hub model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from okapi_pipeline.tiny.models import model_config

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    config = model_config(spec["build"], tokenizer)
    if "vocab_size" in spec["build"]:
        config.vocab_size = spec["build"]["vocab_size"]
    on_gpu = bool(spec["device"].get("gpus"))
    dtype = torch.bfloat16 if on_gpu and spec["device"]["bf16"] else torch.float32
    set_seed(0)
    with torch.device("cuda" if on_gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(spec["model_dir"])
    tokenizer.save_pretrained(spec["model_dir"])
    parameters = sum(p.numel() for p in model.parameters())
    saved = str(dtype).split(".")[-1]
    return {
        "parameters": parameters,
        "saved_dtype": saved,
        "config_class": type(config).__name__,
        "note": f"{parameters / 1e6:,.1f}M parameters, saved in {saved}",
    }


def training_stage(spec: dict) -> dict:
    """A few steps of one training stage through the project's launcher, timed per step."""
    from okapi_pipeline.training.launch import run_stage
    from okapi_pipeline.training.modeling import load_tokenizer

    stage, model_dir, work = spec["stage"], spec["model_dir"], Path(spec["work"]) / "stages" / spec["model"]
    multi_gpu = stage == "sft_multi_gpu"
    trainer_stage = "sft" if multi_gpu else stage
    settings, examples = training_settings(
        spec["config"], trainer_stage, spec["steps"], spec["ppo_rounds"], spec["ppo_processes"]
    )
    tokenizer = load_tokenizer(model_dir)
    data_path, tokens = DATA[trainer_stage](tokenizer, settings, examples, work / f"{stage}.jsonl")
    out_dir, checkpoint_dir = work / stage, work / f"{stage}-checkpoints"
    arguments = {
        **STAGE_INPUTS[trainer_stage](model_dir, data_path),
        "out_dir": str(out_dir),
        "settings": settings,
        "checkpoint_dir": str(checkpoint_dir),
        "threads": spec["threads"],
    }
    timer, generation = StepTimer.install(), GenerationCounter.install()
    gpus = spec["device"]["gpus"] if multi_gpu else 1
    run_stage(trainer_stage, arguments, gpus=gpus)

    summary = json.loads((out_dir / "training_summary.json").read_text())
    result = {
        "steps": summary["steps"],
        "parameters": summary["total_parameters"],
        "trainable_parameters": summary["trainable_parameters"],
        "processes": gpus,
        "examples": examples,
        "bf16": summary["bf16"],
        "settings": settings,
    }
    if multi_gpu:
        # The launched processes are not instrumented: the summary's rate (all processes).
        rate = summary.get("tokens_per_second")
        result.update(tokens=tokens, tokens_per_s=rate, step_time_s=tokens / summary["steps"] / rate if rate else None)
    else:
        result.update(single_device_measures(trainer_stage, settings, timer, generation, tokens))
        result["problems"] = dtype_problems("the training forward", result["compute_dtype"], spec["device"])
        if trainer_stage == "ppo":
            result["problems"] += dtype_problems("the rollouts", result["rollout_dtype"], spec["device"])
        if trainer_stage in ("reward_model", "ppo", "dpo"):
            result.update(
                frozen_blocks_check(
                    model_dir, out_dir, settings["trainable_top_blocks"], settings.get("freeze_embeddings", False)
                )
            )
            if not result["frozen_identical"]:
                result["problems"].append(f"frozen weights changed: {', '.join(result['changed_frozen'])}")
    shutil.rmtree(out_dir, ignore_errors=True)  # 7B: 28 GB of fp32 weights
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result


def single_device_measures(stage: str, settings: dict, timer, generation, tokens: int) -> dict:
    """Step times and rates from the instruments; `tokens` is what the data were built to hold."""
    measures = {}
    if stage == "ppo":
        # A PPO "step" is a round: rollouts, then the PPO epochs' optimizer steps over them.
        tokens = generation.prompt_tokens + generation.new_tokens
        steps = settings["num_ppo_epochs"] * (settings["rollout_batch_size"] // settings["mini_batch_size"])
        measures.update(
            generation_s=round(generation.seconds, 2),
            optimizer_steps_per_round=steps,
            rollout_dtype=",".join(sorted(timer.dtypes["no_grad"])) or None,
            note=f"step = 1 round: {settings['rollout_batch_size']} rollouts, {steps} optimizer steps; "
            f"generation {generation.seconds:.1f} s",
        )
    elif stage == "sft" and timer.num_tokens:
        tokens = timer.num_tokens  # trl's own count: padding excluded
    return {**measures, "tokens": tokens, **timer.timing(tokens)}


def dtype_problems(what: str, dtype: str | None, device: dict) -> list[str]:
    """bf16 exactly where the GPU supports it, float32 elsewhere."""
    expected = "bfloat16" if device.get("gpus") and device.get("bf16") else "float32"
    return [] if dtype == expected else [f"{what} ran in {dtype}, expected {expected}"]


def evaluate_stage(spec: dict) -> dict:
    """The evaluate stage on the demo benchmarks of one language, with one lm-eval backend."""
    from okapi_pipeline.config import BENCHMARKS
    from okapi_pipeline.evaluation.benchmarks import prepare_benchmark
    from okapi_pipeline.evaluation.evaluate import evaluate_model
    from okapi_pipeline.jsonl import read_jsonl

    backend = spec["stage"].removeprefix("evaluate_")
    work = Path(spec["work"]) / "stages" / spec["model"] / spec["stage"]
    protocol = {key: value for key, value in spec["config"]["evaluation"].items() if key != "released_models"}
    protocol["backend"] = backend
    language = "vi"  # a language of the demo benchmarks (and of the paper)
    files = {}
    for bench in BENCHMARKS:
        shots = protocol[bench]["num_fewshot"]
        splits = list(dict.fromkeys([protocol[bench]["split"]] + ([protocol[bench]["fewshot_split"]] if shots else [])))
        # The demo's files, in the released layout (demo/benchmarks/m_arc/vi_test.json).
        demo = REPO / "demo" / "benchmarks" / f"m_{bench}"
        source = {"source": "local", "files": {split: str(demo / f"{language}_{split}.json") for split in splits}}
        files[bench] = work / "data" / f"{bench}.json"
        prepare_benchmark(bench, language, source, splits, files[bench])
    timer = LmEvalTimer.install()
    scores = evaluate_model(
        spec["model_dir"],
        files,
        protocol,
        {b: work / "scores" / f"{b}.json" for b in files},
        work / "tasks",
        threads=spec["threads"],
    )
    scored = [score for score in scores.values() if "unavailable" not in score]
    if not scored:
        raise RuntimeError(f"no benchmark was scored: {scores}")
    items = sum(score["n_samples"] for score in scored)
    requests = sum(
        len(prompt["continuations"])
        for score in scored
        for prompt in read_jsonl(work / "tasks" / score["task"] / "samples.jsonl")
    )
    run = scored[0]["run"]
    result = {
        "items": items,
        "loglikelihood_requests": requests,
        "scoring_s": round(timer.seconds, 2),
        "items_per_s": items / timer.seconds,
        "requests_per_s": requests / timer.seconds,
        "batch_size": protocol.get("batch_size"),
        "batch_sizes_chosen": timer.batch_sizes,
        "compute_dtype": run["dtype"],
        "language": language,
        "shots": {score["benchmark"]: score["n_shot"] for score in scored},
    }
    result["problems"] = dtype_problems("lm-eval", run["dtype"], spec["device"])
    return result


def generate_stage(spec: dict) -> dict:
    """K sampled responses per prompt (the ranking stage's generation, hf engine), timed in generate()."""
    from okapi_pipeline.data.generation import generate_responses
    from okapi_pipeline.jsonl import read_jsonl, write_jsonl

    work = Path(spec["work"]) / "stages" / spec["model"]
    demo = read_jsonl(REPO / "demo" / "instructions.jsonl")
    records = [demo[i % len(demo)] for i in range(GENERATION_PROMPTS[spec["size"]])]  # the demo's 60, repeated
    write_jsonl(work / "prompts.jsonl", [{**record, "id": f"rm-{i:05d}"} for i, record in enumerate(records)])
    settings = {**spec["config"]["ranking"], "engine": "hf", "seed": 0}
    counter = GenerationCounter.install()
    summary = generate_responses(
        spec["model_dir"],
        work / "prompts.jsonl",
        work / "responses.jsonl",
        settings,
        progress_path=work / "responses.progress.jsonl",
        threads=spec["threads"],
    )
    return {
        "prompts": len(records),
        "responses_per_prompt": settings["responses_per_prompt"],
        "max_new_tokens": settings["max_new_tokens"],
        "batch_sizes": summary["batch_sizes"],
        "new_tokens": counter.new_tokens,
        "generation_s": round(counter.seconds, 2),
        "tokens_per_s": counter.new_tokens / counter.seconds,
        "compute_dtype": counter.dtype,
        "note": f"prompts per batch: {', '.join(map(str, summary['batch_sizes']))}",
        "problems": dtype_problems("generation", counter.dtype, spec["device"]),
    }


CHILD_STAGES = {
    "setup": setup_stage,
    "build": build_stage,
    "evaluate_hf": evaluate_stage,
    "evaluate_vllm": evaluate_stage,
    "generate": generate_stage,
    **{stage: training_stage for stage in (*TRAINING_STAGES, "sft_multi_gpu")},
}


# ---- data that fills the configured lengths ----------------------------------------------


def long_texts(tokenizer, count: int, min_tokens: int) -> list[str]:
    """`count` different texts of at least `min_tokens` tokens, cut from the demo corpus."""
    lines = [
        line
        for path in sorted((REPO / "demo" / "corpus").glob("*.txt"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    lengths = [len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]]
    texts = []
    for index in range(count):
        start, parts, total = (index * 37) % len(lines), [], 0
        while total < min_tokens + 8:  # a little over: joining lines can merge tokens
            position = (start + len(parts)) % len(lines)
            parts.append(lines[position])
            total += lengths[position] + 1
        texts.append(" ".join(parts))
    return texts


def sft_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    from okapi_pipeline.jsonl import write_jsonl

    outputs = long_texts(tokenizer, count, settings["max_length"])
    write_jsonl(
        path,
        [
            {"id": f"sft-{i:05d}", "instruction": "Continue the text.", "input": "", "output": text}
            for i, text in enumerate(outputs)
        ],
    )
    return path, count * settings["max_length"]


def pair_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    """Preference pairs whose prompt + response fills max_length; the tokens both sides take."""
    from okapi_pipeline.jsonl import write_jsonl
    from okapi_pipeline.training.reward_model import tokenize_pair

    texts = long_texts(tokenizer, 2 * count, settings["max_length"])
    pairs = [
        {
            "id": f"pair-{i:05d}",
            "instruction": "Continue the text.",
            "input": "",
            "prefered_output": texts[2 * i],
            "rejected_output": texts[2 * i + 1],
        }
        for i in range(count)
    ]
    write_jsonl(path, pairs)
    tokens = sum(len(ids) for pair in pairs for ids in tokenize_pair(pair, tokenizer, settings["max_length"]).values())
    return path, tokens


def ppo_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    """Prompts longer than max_prompt_length (cut from the left to it), so rollouts are full length."""
    from okapi_pipeline.jsonl import write_jsonl

    texts = long_texts(tokenizer, count, settings["max_prompt_length"])
    write_jsonl(path, [{"id": f"ppo-{i:05d}", "instruction": text, "input": ""} for i, text in enumerate(texts)])
    return path, count * (settings["max_prompt_length"] + settings["response_length"])


DATA = {"sft": sft_data, "reward_model": pair_data, "dpo": pair_data, "ppo": ppo_data}
# Each stage starts from the base model; PPO's reward and value models are the base model with a new head.
STAGE_INPUTS = {
    "sft": lambda model, data: {"base_dir": model, "data_path": str(data)},
    "reward_model": lambda model, data: {"sft_dir": model, "pairs_path": str(data)},
    "dpo": lambda model, data: {"sft_dir": model, "pairs_path": str(data)},
    "ppo": lambda model, data: {"sft_dir": model, "reward_model_dir": model, "prompts_path": str(data)},
}


# ---- the bit-identical check -------------------------------------------------------------


def safetensors_index(model_dir) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or sharded with an index)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        return {name: model_dir / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as handle:
        return {name: model_dir / "model.safetensors" for name in handle.keys()}


def block_count(model_dir) -> int:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("num_hidden_layers") or config["n_layer"]


# How the saved weights of the checked families name their block list and final norm
# (read from the files, so that a 7B model need not be loaded to check it).
BLOCK_LIST_NAMES = ("layers", "h", "blocks")
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm")


def is_frozen(name: str, blocks: int, trainable_top_blocks: int, freeze_embeddings: bool) -> bool:
    """Whether freezing leaves this weight untouched: every block below the top k, and
    with `freeze_embeddings` the rest of the backbone but its final norm (the embeddings)."""
    parts = name.split(".")
    for position, part in enumerate(parts[:-1]):
        if part in BLOCK_LIST_NAMES and parts[position + 1].isdigit():
            return int(parts[position + 1]) < blocks - trainable_top_blocks
    return freeze_embeddings and parts[0] in ("model", "transformer") and parts[1] not in FINAL_NORM_NAMES


def frozen_blocks_check(before_dir, after_dir, trainable_top_blocks: int, freeze_embeddings: bool) -> dict:
    """Compare the saved weights one tensor at a time (a 7B model need not fit in memory).

    The base model may be saved in bf16 and the trained one in fp32: bf16 -> fp32 is
    exact, so a frozen weight must still compare equal.
    """
    import torch
    from safetensors import safe_open

    before, after = safetensors_index(before_dir), safetensors_index(after_dir)
    blocks = block_count(before_dir)
    handles = {}

    def tensor(path: Path, name: str):
        if path not in handles:
            handles[path] = safe_open(path, "pt")
        return handles[path].get_tensor(name)

    frozen, changed_frozen, trained_changed = 0, [], False
    for name in sorted(set(before) & set(after)):
        old, new = tensor(before[name], name), tensor(after[name], name)
        same = old.shape == new.shape and torch.equal(old.to(new.dtype), new)
        if is_frozen(name, blocks, trainable_top_blocks, freeze_embeddings):
            frozen += 1
            if not same:
                changed_frozen.append(name)
        elif not same:
            trained_changed = True
    return {
        "frozen_tensors": frozen,
        "frozen_identical": frozen > 0 and not changed_frozen,
        "changed_frozen": changed_frozen[:5],
        "top_blocks_changed": trained_changed,
    }


# ---- instruments ------------------------------------------------------------------------------


def synchronize() -> None:
    """Wait for the GPU: its work is asynchronous, and a step ends when its kernels end."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepTimer:
    """A trainer callback, added to every trainer the stage creates: step times, trl's
    token count, and the dtype the training forward computes in.

    It also stops checkpoint writes: they are not part of a step, and at 7B one
    checkpoint (weights and optimizer state) is about 85 GB. The checkpoint code is
    the same on CPU and GPU and is tested there; the multi-GPU stage keeps its FSDP one.
    """

    @classmethod
    def install(cls):
        from transformers import TrainerCallback
        from transformers.trainer import DEFAULT_CALLBACKS

        class Callback(cls, TrainerCallback):
            pass

        timer = Callback()
        # Trainer and trl's PPOTrainer both start from this list, so every trainer gets the timer.
        DEFAULT_CALLBACKS.append(timer)
        return timer

    def __init__(self):
        self.begin, self.marks, self.num_tokens = None, [], None
        self.dtypes = {"train": set(), "no_grad": set()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._watch_dtype(model)
        synchronize()
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.marks.append(time.perf_counter())
        control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.num_tokens = logs["num_tokens"]

    def _watch_dtype(self, model) -> None:
        """Record the output dtype of the first trainable linear layer, in training and not."""
        import torch

        for module in model.modules() if model is not None else []:
            if isinstance(module, torch.nn.Linear) and any(p.requires_grad for p in module.parameters()):
                module.register_forward_hook(self._record_dtype)
                return

    def _record_dtype(self, module, inputs, output):
        import torch

        self.dtypes["train" if torch.is_grad_enabled() else "no_grad"].add(str(output.dtype).split(".")[-1])

    def timing(self, tokens: int) -> dict:
        """Step time: the median step after the first (which pays for warm-up); tokens/s from it."""
        if not self.marks:
            raise RuntimeError("the trainer ran no optimizer step")
        steps = [b - a for a, b in zip([self.begin, *self.marks], self.marks)]
        typical = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
        per_step = tokens / len(steps)
        return {
            "step_time_s": typical,
            "first_step_s": steps[0],
            "timed_steps": len(steps),
            "train_loop_s": self.marks[-1] - self.begin,
            "tokens_per_step": per_step,
            "tokens_per_s": per_step / typical,
            "compute_dtype": ",".join(sorted(self.dtypes["train"])) or None,
        }


class GenerationCounter:
    """Wraps transformers' generate(): time inside it, prompt and new tokens (padding excluded)."""

    @classmethod
    def install(cls):
        from transformers.generation.utils import GenerationMixin

        counter, original = cls(), GenerationMixin.generate

        def generate(model, *args, **kwargs):
            synchronize()
            started = time.perf_counter()
            output = original(model, *args, **kwargs)
            synchronize()
            counter.add(model, args, kwargs, output, time.perf_counter() - started)
            return output

        GenerationMixin.generate = generate
        return counter

    def __init__(self):
        self.seconds, self.prompt_tokens, self.new_tokens, self.dtype = 0.0, 0, 0, None

    def add(self, model, args, kwargs, output, seconds) -> None:
        sequences = getattr(output, "sequences", output)
        inputs, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
        config = kwargs.get("generation_config") or model.generation_config
        pad = kwargs.get("pad_token_id", getattr(config, "pad_token_id", None))
        new = sequences[:, inputs.shape[1] :]
        self.seconds += seconds
        self.prompt_tokens += int(mask.sum()) if mask is not None else inputs.numel()
        self.new_tokens += int((new != pad).sum()) if pad is not None else new.numel()
        self.dtype = self.dtype or str(model.dtype).split(".")[-1]


class LmEvalTimer:
    """Wraps lm-eval's evaluate(): the scoring time without model loading, and the batch
    sizes that `batch_size: auto` chose."""

    @classmethod
    def install(cls):
        import lm_eval.evaluator as evaluator

        timer, original = cls(), evaluator.evaluate

        def evaluate(*args, **kwargs):
            started = time.perf_counter()
            results = original(*args, **kwargs)
            synchronize()
            timer.seconds = time.perf_counter() - started
            lm = kwargs.get("lm", args[0] if args else None)
            timer.batch_sizes = list(getattr(lm, "batch_sizes", {}).values()) or getattr(lm, "batch_size", None)
            return results

        # simple_evaluate looks evaluate() up in its module when it calls it.
        evaluator.evaluate = evaluate
        return timer

    def __init__(self):
        self.seconds, self.batch_sizes = None, None


class DeviceMemoryPoller:
    """Peak used memory of the visible GPUs by nvidia-smi, twice a second.

    It sees what torch's own counter cannot: other processes of the stage (accelerate's
    workers, vLLM's engine) and memory outside torch's allocator.
    """

    def __init__(self):
        self.peak_mb = None
        self.command = shutil.which("nvidia-smi")
        if self.command:
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        select = ["-i", visible] if visible else []
        while True:
            try:
                used = subprocess.run(
                    [self.command, "--query-gpu=memory.used", "--format=csv,noheader,nounits", *select],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.split()
                self.peak_mb = max([self.peak_mb or 0, *map(float, used)])
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            time.sleep(0.5)


def peak_memory(poller: DeviceMemoryPoller | None) -> dict:
    """torch's peak allocation on a GPU (nvidia-smi's when torch saw none here), else peak RSS."""
    import resource

    import torch

    facts = {
        "peak_rss_gb": max(
            resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 2**20
    }
    device_gb = poller.peak_mb / 1024 if poller and poller.peak_mb else None
    allocated = (
        torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() and torch.cuda.is_initialized() else 0
    )
    facts["peak_device_memory_gb"] = device_gb
    if allocated:
        facts.update(peak_memory_gb=allocated, memory_kind="cuda alloc")
    elif device_gb:
        facts.update(peak_memory_gb=device_gb, memory_kind="nvidia-smi")
    else:
        facts.update(peak_memory_gb=facts["peak_rss_gb"], memory_kind="RSS")
    return facts


if __name__ == "__main__":
    sys.exit(main())
