"""What a GPU job asks SLURM for: GPUs, host memory and a runtime computed from measurements.

A job's runtime is its work (tokens, or benchmark items for evaluation) over the rate
`tools/gpu_check.py` measured for its stage (reference/gpu_measurements.csv), times
MARGIN, plus the time to load and save the model. A rate measured for another model size
or GPU class is extrapolated: compute scales with the parameters and with the GPUs' dense
bf16 peaks, and N GPUs give N times the rate at SCALING_EFFICIENCY. Every runtime says
what it rests on (`basis`): measured, extrapolated from which row, or assumed (stages that
have no measurement yet: the local translation models).
"""

import math
from dataclasses import dataclass

from okapi_pipeline.cluster.gpu_layout import allowed_processes, gpus_for, joint_gpus
from okapi_pipeline.schema import MT_ARCHITECTURES

# The rule of each GPU stage (one list: the rules, plan_cluster and the tests read it).
GPU_RULES = {
    "train_sft": "sft",
    "train_reward_model": "reward_model",
    "train_ppo": "ppo",
    "train_dpo": "dpo",
    "generate_responses": "generate_responses",
    "evaluate": "evaluate",
}
TRAINING_STAGES = ("sft", "reward_model", "ppo", "dpo")
# What each stage's measured rate counts: gpu_check's stage name and its unit.
MEASURED_AS = {
    "sft": ("sft", "tokens_per_s"),
    "reward_model": ("reward_model", "tokens_per_s"),
    "dpo": ("dpo", "tokens_per_s"),
    "ppo": ("ppo", "tokens_per_s"),
    "generate_responses": ("generate", "tokens_per_s"),
    "evaluate": ("evaluate_hf", "items_per_s"),
}
# A SLURM time limit is the measured time times this, so that a slower node, longer data or a
# busy file system does not kill a job; a job stopped at its limit resumes on its retry.
MARGIN = 1.5
SCALING_EFFICIENCY = 0.9  # of N GPUs' rate, sharded (FSDP / ZeRO-2 communication)
# Loading the model, saving the result (fp32 weights: 28 GB at 7B) and starting Python.
SETUP_MINUTES = 5
SETUP_MINUTES_PER_BILLION = 1.5
MIN_RUNTIME_MINUTES = 30
# Items of the largest language of each translated benchmark (scored split; okapi-facts).
BENCHMARK_ITEMS = {"arc": 1170, "hellaswag": 9500, "mmlu": 13300}

# Per stage: host memory in bytes per parameter (what the job holds in host memory while
# it loads), and, for the stages with no measurement yet, the hours one GPU takes for a
# model of the reference size (NLLB-200 3.3B; configs/local-translation.yaml), in proportion.
NLLB_3B = 3.3e9
HOST_BYTES_PER_PARAMETER = {
    "sft": 18,
    "reward_model": 10,
    "ppo": 16,
    "dpo": 12,
    "generate_responses": 8,
    "evaluate": 8,
    "self_instruct": 8,
    "rank_shard": 8,
    "translate_shard": 8,
    "back_translate_shard": 8,
    "translate_benchmark": 8,
    "translator_sample": 8,
}
ASSUMED_HOURS = {
    # LLM stages on a local model (`hf`): a 7B model's hours for one shard / job.
    "self_instruct": (24, 7e9),
    "rank_shard": (1, 7e9),
    # Translation models: up to 2,000 items a shard; about 140K sentences an hour at 40 a second.
    "translate_shard": (1, NLLB_3B),
    "back_translate_shard": (2, NLLB_3B),
    "translate_benchmark": (2, NLLB_3B),
    "translator_sample": (1, NLLB_3B),
}
BASE_MEMORY_MB = 4000  # Python, torch, transformers, lm-eval and the data

# Dense bf16 tensor-core peaks (TFLOPS, no sparsity) from the vendors' data sheets. The first
# pattern found in a device name wins, so the more specific names come first.
BF16_PEAK_TFLOPS = (
    ("gh200", 989),
    ("h200", 989),
    ("h100 pcie", 756),
    ("h100 nvl", 835),
    ("h100", 989),
    ("h800", 989),
    ("b200", 2250),
    ("b100", 1750),
    ("a100", 312),
    ("a800", 312),
    ("l40s", 362),
    ("l40", 181),
    ("l4", 121),
    ("a10g", 125),
    ("a10", 125),
    ("rtx 4090", 165),
    ("rtx 6000 ada", 364),
    ("rtx a6000", 155),
    ("mi300x", 1307),
    ("mi250x", 383),
)


def gpu_class(device_name: str | None) -> str | None:
    """The class of a GPU by its name (torch.cuda.get_device_name, or the site's `gpu`)."""
    name = (device_name or "").lower()
    return next((pattern for pattern, _ in BF16_PEAK_TFLOPS if pattern in name), None)


def peak_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name, or None."""
    return dict(BF16_PEAK_TFLOPS).get(gpu_class(device_name))


# ---- the measured table --------------------------------------------------------------------

COLUMNS = [
    "date",
    "gpu",
    "gpu_memory_gb",
    "gpus",
    "model",
    "parameters",
    "stage",
    "tokens_per_s",
    "items_per_s",
    "step_time_s",
    "peak_gb",
    "mfu",
    "precision",
    "note",
]


def read_measurements(path):
    """The measured table as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(path, comment="#")


@dataclass(frozen=True)
class Rate:
    per_gpu: float  # tokens (items) per second on one GPU of the site's class
    basis: str


def stage_rate(stage: str, parameters: float, gpu: str, measurements) -> Rate | None:
    """The rate of `stage` for a model of `parameters` on one `gpu`, from the rows of the
    nearest size (sizes within 10% alike), of the same GPU class first, the newest first;
    rows that tie on all three (llama-1b and bloom-1b1, say) are averaged. None without a row."""
    name, unit = MEASURED_AS[stage]
    rows = measurements[(measurements["stage"] == name) & measurements[unit].notna()]
    if rows.empty:
        return None
    rows = rows.assign(
        distance=(rows["parameters"] / parameters).map(lambda ratio: round(abs(math.log(ratio)), 1)),
        other_class=rows["gpu"].map(lambda device: gpu_class(device) != gpu_class(gpu)),
    ).sort_values(["distance", "other_class", "date"], ascending=[True, True, False], kind="stable")
    key = ["distance", "other_class", "date"]
    best = rows[(rows[key] == rows.iloc[0][key]).all(axis=1)]
    per_gpu = (best[unit] / best["gpus"] * best["parameters"] / parameters).mean()
    first = best.iloc[0]
    target, measured = peak_tflops(gpu), peak_tflops(first["gpu"])
    if target and measured:
        per_gpu *= target / measured
    same = first["distance"] == 0 and gpu_class(gpu) == gpu_class(first["gpu"])
    where = f"{', '.join(best['model'])} {first['stage']} on {first['gpu']} ({first['date']})"
    return Rate(per_gpu, f"measured: {where}" if same else f"extrapolated from {where}")


# ---- a job's work and runtime --------------------------------------------------------------


def stage_work(stage: str, config: dict) -> float:
    """One per-language job's work (a ranking shard's, for generation) in the unit its rate
    counts: tokens trained or generated (at most max_length a sequence, the bound the data
    are cut to), items for evaluation."""
    size = {split: config["split"][split]["size"] for split in ("sft", "rm", "ppo")}
    if stage == "sft":
        settings = config["sft"]
        return size["sft"] * (1 - settings["held_out_fraction"]) * settings["epochs"] * settings["max_length"]
    if stage in ("reward_model", "dpo"):
        settings, k = config[stage], config["ranking"]["responses_per_prompt"]
        # A ranking of k responses gives every pair; the released file holds pairs already.
        per_prompt = 1 if config["split"]["rm"].get("source") == "okapi_release" else math.comb(k, 2)
        pairs = size["rm"] * per_prompt * (1 - settings["held_out_fraction"])
        return pairs * settings["epochs"] * 2 * settings["max_length"]
    if stage == "ppo":
        settings = config["ppo"]
        rounds = settings["rounds"] or math.ceil(size["ppo"] / settings["rollout_batch_size"])
        return rounds * settings["rollout_batch_size"] * (settings["max_prompt_length"] + settings["response_length"])
    if stage == "generate_responses":  # one job per ranking shard
        ranking, prompts = config["ranking"], min(size["rm"], config["translation"]["items_per_shard"])
        return prompts * ranking["responses_per_prompt"] * ranking["max_new_tokens"]
    if stage == "evaluate":
        return sum(BENCHMARK_ITEMS.values())  # one job scores a model on the three benchmarks
    raise ValueError(f"no work model for the stage {stage!r}")


def runtime(stage: str, parameters: float, work: float, gpus: int, site: dict, measurements) -> tuple[int, str]:
    """(SLURM minutes, basis) of a job of `work` on `gpus` GPUs of the site's class."""
    setup = SETUP_MINUTES + SETUP_MINUTES_PER_BILLION * parameters / 1e9
    rate = stage_rate(stage, parameters, site["gpu"], measurements) if stage in MEASURED_AS else None
    if rate is None:
        hours, reference = ASSUMED_HOURS[stage]
        minutes, basis = hours * 60 * parameters / reference * work / gpus, "assumed"
    else:
        speed = rate.per_gpu * gpus * (SCALING_EFFICIENCY if gpus > 1 else 1)
        minutes, basis = work / speed / 60, rate.basis
    return max(MIN_RUNTIME_MINUTES, math.ceil(MARGIN * minutes + setup)), basis


def gpu_job(
    stage: str,
    parameters: float,
    config: dict,
    measurements,
    languages: int = 1,
    least_gpus: int = 1,
) -> dict:
    """What one job of `stage` on a model of `parameters` asks for on its first attempt:
    GPUs (the fewest of the site's that hold a training stage, at least `least_gpus`),
    host memory in MB, runtime in minutes and what the runtime rests on. `languages`: the
    languages a joint job holds the work of (a per-language job: 1)."""
    site = config["site"]
    # In the unit of the stage's rate; for a stage with an assumed time, in jobs.
    work = (stage_work(stage, config) if stage in MEASURED_AS else 1) * languages
    gpus = least_gpus
    if stage in TRAINING_STAGES:
        # The fewest GPUs that hold the model, more where the batches allow it and the job
        # would otherwise run past the site's longest job.
        fits = max(gpus, gpus_for(stage, parameters, config[stage], site))
        options = [n for n in allowed_processes(stage, config[stage], site["gpus_per_node"]) if n >= fits] or [fits]
        gpus = next(
            (
                n
                for n in options
                if runtime(stage, parameters, work, n, site, measurements)[0] <= site["max_job_hours"] * 60
            ),
            options[-1],
        )
    minutes, basis = runtime(stage, parameters, work, gpus, site, measurements)
    memory_mb = BASE_MEMORY_MB + HOST_BYTES_PER_PARAMETER[stage] * parameters / 1e6
    return {"gpu": gpus, "mem_mb": 1000 * math.ceil(memory_mb / 1000), "runtime": minutes, "basis": basis}


# ---- the model a job loads ----------------------------------------------------------------

# A model of unknown size (a hub id or path no config entry describes) is sized as the paper's 7B.
UNKNOWN_MODEL_PARAMETERS = 7e9


def built_model_parameters(build: dict, vocab_size: int) -> float:
    """About how many parameters a tiny `build` model has: untied embeddings and head, and
    per layer attention (4 h^2) and the feed-forward block (3 h i), twice for the
    encoder-decoder translation models."""
    hidden = build["hidden_size"]
    ffn = build.get("intermediate_size") or 4 * hidden
    layer = 4 * hidden**2 + 3 * hidden * ffn
    stacks = 2 if build["architecture"] in MT_ARCHITECTURES else 1
    return 2 * vocab_size * hidden + stacks * build["num_layers"] * layer


def model_parameters(name: str, config: dict) -> float:
    """The parameter count of a base model, a released model or any other model a stage
    names: the configured count, else estimated from its `build`, else that of the model a
    released one is compared with, else UNKNOWN_MODEL_PARAMETERS."""
    released = config["evaluation"]["released_models"]
    if name in config["base_models"]:
        entry = config["base_models"][name]
        if entry["parameters"]:
            return entry["parameters"]
        if "build" in entry:
            return built_model_parameters(entry["build"], config["tiny_models"]["vocab_size"])
    elif name in released:
        entry = released[name]
        if entry["parameters"]:
            return entry["parameters"]
        if "compare_with" in entry:
            return model_parameters(entry["compare_with"]["model"], config)
    return UNKNOWN_MODEL_PARAMETERS


def model_gpu_job(stage: str, model: str, config: dict, measurements, joint: bool = False) -> dict:
    """`gpu_job` for one job of `stage` on the model named `model`. A joint job has the work
    of every language, on the most GPUs its batches divide by (training.joint_gpus)."""
    languages, least = 1, 1
    if joint:
        languages = len(config["languages"])
        least = joint_gpus(stage, config[stage], config["training"]["joint_gpus"])
    return gpu_job(stage, model_parameters(model, config), config, measurements, languages=languages, least_gpus=least)


# ---- rows from a gpu_check report ----------------------------------------------------------

# gpu_check's stages whose rates the table keeps.
RECORDED_STAGES = ("sft", "reward_model", "dpo", "ppo", "generate", "evaluate_hf", "evaluate_vllm", "sft_multi_gpu")


def measurement_rows(report: dict) -> list[dict]:
    """The table's rows for a tools/gpu_check.py report: one per stage that ran on a GPU and
    measured a rate (a CPU run measures nothing the runtimes could use)."""
    device = report["device"]
    if not device.get("gpus"):
        return []
    parameters = {s["model"]: s.get("parameters") for s in report["stages"] if s["stage"] == "build"}
    rows = []
    for stage in report["stages"]:
        rate = stage.get("items_per_s") if stage["stage"].startswith("evaluate") else stage.get("tokens_per_s")
        if stage["stage"] not in RECORDED_STAGES or stage["status"] != "ok" or not rate:
            continue
        dtype = stage.get("compute_dtype") or ""
        rows.append(
            {
                "date": report["started"][:10],
                "gpu": device["names"][0],
                "gpu_memory_gb": device["memory_gb"][0],
                "gpus": stage.get("processes", 1),
                "model": stage["model"],
                "parameters": parameters.get(stage["model"]) or stage.get("parameters"),
                "stage": stage["stage"],
                "tokens_per_s": None if stage["stage"].startswith("evaluate") else round(rate, 1),
                "items_per_s": round(rate, 2) if stage["stage"].startswith("evaluate") else None,
                "step_time_s": round(stage["step_time_s"], 3) if stage.get("step_time_s") else None,
                "peak_gb": round(stage["peak_memory_gb"], 1) if stage.get("peak_memory_gb") else None,
                "mfu": round(stage["mfu"], 3) if stage.get("mfu") else None,
                "precision": "bf16" if "bfloat16" in dtype else ("fp32" if "float32" in dtype else dtype),
                "note": stage.get("note", ""),
            }
        )
    return rows


def append_measurements(path, rows: list[dict]) -> int:
    """Append rows to the table (its comment header kept); return how many."""
    import pandas as pd

    if rows:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(path, mode="a", header=False, index=False)
    return len(rows)
