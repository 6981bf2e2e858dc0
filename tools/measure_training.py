"""Measure the training stages on the demo's tiny models: wall time and peak memory per
stage, and SFT tokens per second.

    .venv/bin/python tools/measure_training.py [--threads 1] [--keep DIR]

Each stage runs in a process of its own, through `python -m okapi_pipeline.training.launch` as a
rule's job does on one device, so its wall time includes the imports and model loading
a job pays; its peak resident memory is the kernel's account of that process (wait4).
Settings are config.yaml's; the data are the bundled demo instructions (English): the
first ones for SFT, the next ones as prompts whose own answer is ranked above three
others' (6 pairs each) for the reward model and DPO, and as PPO prompts.
The load average is printed with the numbers: on a shared machine they move with it.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from okapi_pipeline.config import load_schema, split_sizes, validate_config  # noqa: E402
from okapi_pipeline.jsonl import read_jsonl, write_jsonl  # noqa: E402

BUILD = (
    "import json, sys\n"
    "from okapi_pipeline.tiny.models import build_tiny_model\n"
    "from okapi_pipeline.tiny.tokenizers import train_tokenizer\n"
    "arguments = json.load(open(sys.argv[1]))\n"
    "if 'vocab_size' in arguments: train_tokenizer(**arguments)\n"
    "else: build_tiny_model(**arguments)\n"
)


def measured(command: list[str], log_path: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=log,
            cwd=REPO,
            env=dict(os.environ, HF_HUB_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1"),
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status:
        raise SystemExit(f"{' '.join(command)} failed; see {log_path}")
    return wall, usage.ru_maxrss / 1024  # KB on Linux


def run(step: str, arguments: dict, work: Path) -> tuple[float, float]:
    args_json = work / f"{step}.json"
    args_json.write_text(json.dumps(arguments, default=str))
    stage = step.split(":")[0]
    if stage in ("tokenizer", "build"):
        command = [sys.executable, "-c", BUILD, str(args_json)]
    else:
        command = [sys.executable, "-m", "okapi_pipeline.training.launch", stage, "--args-json", str(args_json)]
    return measured(command, work / f"{step.replace(':', '-')}.log")


def demo_data(config: dict, work: Path) -> dict:
    records = read_jsonl(REPO / config["instructions"]["source"])
    # Stand-in data from the bundled records at the demo's split sizes.
    sizes = split_sizes(config)
    sft, rm = records[: sizes["sft"]], records[sizes["sft"] : sizes["sft"] + sizes["rm"]]
    pairs = []
    for index, record in enumerate(rm):
        others = [rm[(index + shift) % len(rm)]["output"] for shift in (1, 2, 3)]
        ranked = [record["output"], *others]
        pairs += [
            {
                "id": f"rm-{index:05d}",
                "instruction": record["instruction"],
                "input": record["input"],
                "prefered_output": better,
                "rejected_output": worse,
            }
            for better, worse in itertools.combinations(ranked, 2)
        ]
    write_jsonl(work / "sft.jsonl", sft)
    write_jsonl(work / "pairs.jsonl", pairs)
    write_jsonl(work / "prompts.jsonl", rm)
    return {"sft": len(sft), "pairs": len(pairs), "prompts": len(rm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (a rule's `threads`)")
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary folder")
    options = parser.parse_args()

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    config = validate_config(raw, load_schema(REPO / "schemas/config.schema.yaml"))
    with tempfile.TemporaryDirectory() as scratch:
        work = options.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        sizes = demo_data(config, work)
        load_before = os.getloadavg()
        rows = []
        tiny = config["tiny_models"]
        rows.append(
            (
                "-",
                "tokenizer",
                *run(
                    "tokenizer",
                    {
                        "corpus_dir": str(REPO / tiny["corpus"]),
                        "out_dir": str(work / "tokenizer"),
                        "vocab_size": tiny["vocab_size"],
                    },
                    work,
                ),
            )
        )
        tokens_per_second = {}
        for model in config["models"]:
            root = work / model
            base, sft, rm = root / "base", root / "sft", root / "rm"
            common = {"threads": options.threads}
            steps = [
                (
                    "build",
                    {
                        "tokenizer_dir": str(work / "tokenizer"),
                        "corpus_dir": str(REPO / tiny["corpus"]),
                        "out_dir": str(base),
                        "build": config["base_models"][model]["build"],
                        "pretraining": tiny,
                        "threads": options.threads,
                    },
                ),
                (
                    "sft",
                    {
                        **common,
                        "base_dir": str(base),
                        "data_path": str(work / "sft.jsonl"),
                        "out_dir": str(sft),
                        "settings": config["sft"],
                    },
                ),
                (
                    "reward_model",
                    {
                        **common,
                        "sft_dir": str(sft),
                        "pairs_path": str(work / "pairs.jsonl"),
                        "out_dir": str(rm),
                        "settings": config["reward_model"],
                    },
                ),
                (
                    "ppo",
                    {
                        **common,
                        "sft_dir": str(sft),
                        "reward_model_dir": str(rm),
                        "prompts_path": str(work / "prompts.jsonl"),
                        "out_dir": str(root / "ppo"),
                        "settings": config["ppo"],
                    },
                ),
                (
                    "dpo",
                    {
                        **common,
                        "sft_dir": str(sft),
                        "pairs_path": str(work / "pairs.jsonl"),
                        "out_dir": str(root / "dpo"),
                        "settings": config["dpo"],
                    },
                ),
            ]
            for stage, arguments in steps:
                if stage != "build":
                    arguments["checkpoint_dir"] = str(root / "checkpoints" / stage)
                rows.append((model, stage, *run(f"{stage}:{model}", arguments, work)))
            summary = json.loads((sft / "training_summary.json").read_text())
            tokens_per_second[model] = summary["tokens_per_second"]
        load_after = os.getloadavg()

    print(
        f"data: {sizes['sft']} SFT records, {sizes['pairs']} pairs, {sizes['prompts']} PPO prompts; "
        f"torch threads per job: {options.threads}; CPUs: {os.cpu_count()}"
    )
    print(
        f"load average (1, 5, 15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"\n{'model':<12} {'stage':<14} {'wall s':>8} {'peak RSS MB':>12}")
    for model, stage, wall, peak in rows:
        print(f"{model:<12} {stage:<14} {wall:8.1f} {peak:12.0f}")
    print("\nSFT tokens per second (training loop only, padding excluded):")
    for model, rate in tokens_per_second.items():
        print(f"  {model}: {rate}")


if __name__ == "__main__":
    main()
