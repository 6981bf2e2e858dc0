"""The child side of the check: one stage in this process, its result written as JSON.

The runner starts `python -m okapi_pipeline.gpu_check.stages SPEC.json`, one process a stage.
"""

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from okapi_pipeline.cluster.gpu_jobs import peak_tflops
from okapi_pipeline.gpu_check.frozen import frozen_blocks_check
from okapi_pipeline.gpu_check.instruments import (
    DeviceMemoryPoller,
    GenerationCounter,
    LmEvalTimer,
    StepTimer,
    peak_memory,
)
from okapi_pipeline.gpu_check.measures import dtype_problems, single_device_measures
from okapi_pipeline.gpu_check.settings import REPO, training_settings
from okapi_pipeline.gpu_check.shapes import GENERATION_PROMPTS, TRAINING_STAGES
from okapi_pipeline.gpu_check.stage_data import DATA, STAGE_INPUTS


def child_main(spec_path: Path) -> int:
    """Run the stage a spec names; exit status 1 when it ran but failed a check (the dtype, the frozen weights)."""
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


if __name__ == "__main__":
    sys.exit(child_main(Path(sys.argv[1])))
