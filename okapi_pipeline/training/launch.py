"""Run a training stage on the devices a job was given.

    python -m okapi_pipeline.training.launch STAGE --args-json FILE

With one GPU or none the stage runs in this process. With N > 1 visible GPUs the same
command runs under `accelerate launch` with N processes and one of the repository's
accelerate configs (accelerate/*.yaml): FSDP for SFT and the reward model (DDP for
LoRA, whose point is a model that fits one GPU) and DPO (trl shards its frozen reference
alike), DeepSpeed ZeRO-2 for PPO, whose trl trainer prepares its frozen reference and
reward model only for DeepSpeed.
Gradient accumulation follows the WORLD_SIZE that accelerate sets, so the effective
batch is the same on any number of devices.
"""

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# stage -> (module, function)
STAGES = {
    "sft": ("okapi_pipeline.training.sft", "train_sft"),
    "reward_model": ("okapi_pipeline.training.reward_model", "train_reward_model"),
    "ppo": ("okapi_pipeline.training.ppo", "train_ppo"),
    "dpo": ("okapi_pipeline.training.dpo", "train_dpo"),
}
CONFIG_DIR = Path(__file__).resolve().parents[2] / "accelerate"


def visible_gpus() -> int:
    """GPUs this job may use (CUDA_VISIBLE_DEVICES, which SLURM sets, is respected)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def accelerate_config(stage: str, settings: dict) -> Path:
    if stage == "ppo":
        name = "deepspeed_zero2"
    elif stage == "sft" and settings["finetuning"] == "lora":
        name = "ddp"
    else:
        name = "fsdp"
    return CONFIG_DIR / f"{name}.yaml"


def launch_command(stage: str, args_json, settings: dict, processes: int) -> list[str]:
    """The command that runs `stage` on `processes` devices."""
    command = [sys.executable, "-m", "okapi_pipeline.training.launch", stage, "--args-json", str(args_json)]
    if processes <= 1:
        return command
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config(stage, settings)),
        "--num_processes",
        str(processes),
        *command[1:],
    ]


def run_stage(stage: str, arguments: dict, gpus: int | None = None):
    """Train `stage` with `arguments` (the stage function's keywords) on every visible GPU.

    Returns the function's result on one device; on several the launched processes
    write the outputs and nothing is returned.
    """
    gpus = visible_gpus() if gpus is None else gpus
    if gpus <= 1:
        module, function = STAGES[stage]
        return getattr(importlib.import_module(module), function)(**arguments)
    with tempfile.TemporaryDirectory() as scratch:
        args_json = Path(scratch) / "arguments.json"
        args_json.write_text(json.dumps(arguments, default=str))
        command = launch_command(stage, args_json, arguments["settings"], gpus)
        log.info("%d GPUs: %s", gpus, " ".join(command))
        subprocess.run(command, check=True, stdout=sys.stdout, stderr=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--args-json", required=True, type=Path, help="the stage function's keyword arguments")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    arguments = json.loads(options.args_json.read_text())
    # Inside `accelerate launch` (LOCAL_RANK set): run here, never launch again.
    run_stage(options.stage, arguments, gpus=1 if "LOCAL_RANK" in os.environ else None)


if __name__ == "__main__":
    main()
