"""Scoring with lm-evaluation-harness under the paper's protocol (mlmm-evaluation).

The upstream harness's `okapi` tasks are not the paper's protocol (no shots, letter
targets for MMLU, hub data), so each (benchmark, language) gets a task YAML written
here from the normalised benchmark file:

- ARC-Challenge: "Question: {question}\\nAnswer:", the option texts as choices,
  25 shots from train, test scored.
- HellaSwag: activity_label + ": " + ctx_a + " " + ctx_b.capitalize(), cleaned like
  the harness's hellaswag task, the endings as choices, 0-shot, validation scored.
- MMLU: "Question: ..\\nChoices:\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:", the FULL
  option texts as choices (not letters), 25 shots, test scored.

The docs are written already formatted (query, choices, gold) so the YAML needs no
Python hooks and a reader sees the exact prompt text in the data files. Split names,
shots, limit and seed come from the `evaluation` config block.
"""

import importlib.util
import json
import logging
import os
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import yaml

from okapi_pipeline.benchmarks import LETTERS, option_texts
from okapi_pipeline.jsonl import write_json, write_jsonl

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
EXAMPLE_PROMPTS = 3


# ---- the paper's prompts ---------------------------------------------------------


def arc_doc(record: dict) -> dict:
    return {
        "id": record["id"],
        "query": "Question: " + record["instruction"] + "\nAnswer:",
        "choices": option_texts(record),
        "gold": LETTERS.index(record["answer"]),
    }


def mmlu_doc(record: dict) -> dict:
    choices = option_texts(record)
    listing = "".join(f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, choices))
    return {
        "id": record["id"],
        "query": "Question: " + record["instruction"] + "\nChoices:\n" + listing + "Answer:",
        "choices": choices,
        "gold": LETTERS.index(record["answer"]),
    }


def hellaswag_clean(text: str) -> str:
    """The harness's hellaswag cleanup: WikiHow bracket tags out, double spaces single."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(record: dict) -> dict:
    context = record["ctx_a"] + " " + record["ctx_b"].capitalize()
    return {
        "id": str(record["ind"]),
        "query": hellaswag_clean(record["activity_label"] + ": " + context),
        "choices": [hellaswag_clean(ending) for ending in record["endings"]],
        "gold": int(str(record["label"]).strip()),
    }


TASK_DOCS = {"arc": arc_doc, "hellaswag": hellaswag_doc, "mmlu": mmlu_doc}


# ---- task YAMLs -------------------------------------------------------------------


def task_name(bench: str, lang: str) -> str:
    return f"okapi_paper_{bench}_{lang}"


def write_task(bench: str, benchmark_file, protocol: dict, workdir) -> tuple[str, dict]:
    """Write one task's data files (JSONL, absolute paths) and YAML; return (name, config).

    `protocol` is the benchmark's entry of the `evaluation` config block.
    """
    data = json.loads(Path(benchmark_file).read_text(encoding="utf-8"))
    name = task_name(bench, data["language"])
    shots = protocol["num_fewshot"]
    splits = list(dict.fromkeys([protocol["split"]] + ([protocol["fewshot_split"]] if shots else [])))
    for split in splits:
        if split not in data["splits"]:
            raise ValueError(f"{benchmark_file}: no split {split!r} (has {', '.join(data['splits'])})")
    if not data["splits"][protocol["split"]]:
        raise ValueError(f"{benchmark_file}: split {protocol['split']!r} is empty")
    if shots and len(data["splits"][protocol["fewshot_split"]]) < shots:
        raise ValueError(
            f"{benchmark_file}: {shots} shots asked but split {protocol['fewshot_split']!r} "
            f"has only {len(data['splits'][protocol['fewshot_split']])} records"
        )
    folder = Path(workdir).resolve() / name
    shutil.rmtree(folder, ignore_errors=True)
    data_files = {}
    for split in splits:
        data_files[split] = str(folder / f"{split}.jsonl")
        write_jsonl(data_files[split], [TASK_DOCS[bench](record) for record in data["splits"][split]])
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files, "cache_dir": str(folder / "hf_datasets")},
        "output_type": "multiple_choice",
        "test_split": protocol["split"],
        "fewshot_split": protocol["fewshot_split"] if shots else None,
        "num_fewshot": shots,
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0, "benchmark": bench, "language": data["language"]},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return name, config


# ---- running lm-eval -----------------------------------------------------------------


BACKENDS = ("hf", "vllm")


def model_arguments(backend: str, model_dir, dtype: str, protocol: dict) -> str:
    """lm-eval's model_args for the `evaluation.backend`.

    vllm scores the same loglikelihoods from prompt logprobs, faster on a GPU; it
    needs CUDA, so on CPU (or with float32) hf is the backend to use.
    """
    if backend == "hf":
        return f"pretrained={model_dir},dtype={dtype}"
    if backend == "vllm":
        return (
            f"pretrained={model_dir},dtype={dtype},tensor_parallel_size=1,"
            f"gpu_memory_utilization={protocol['gpu_memory_utilization']},"
            f"seed={protocol['seed']}"
        )
    raise ValueError(f"evaluation.backend: unknown backend {backend!r} ({' or '.join(BACKENDS)})")


def check_backend(backend: str) -> None:
    """Fail in one line, before any work, when the chosen backend is not installed."""
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise RuntimeError(
            "evaluation.backend is vllm but the vllm package is not installed here "
            "(pip install vllm on a CUDA machine, or set evaluation.backend: hf)"
        )


class TruncationCounter(logging.Filter):
    """Counts lm-eval's one-warning-per-request notes about left-truncated prompts.

    25-shot prompts can exceed a model's context; the count goes to the score
    file and the log gets one line instead of thousands.
    """

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "exceeds model's maximum length" in record.getMessage():
            self.count += 1
            return False
        return True


def run_lm_eval(model_dir, tasks: list[str], workdir, protocol: dict, device: str, dtype: str) -> tuple[dict, int]:
    """One lm-eval call for all tasks (the model is loaded once); also the truncation count."""
    # The generated tasks read local files; nothing may reach the hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import lm_eval
    from lm_eval.tasks import TaskManager

    seed = protocol["seed"]
    backend = protocol["backend"]
    counter = TruncationCounter()
    hf_logger = logging.getLogger("lm_eval.models.huggingface")
    hf_logger.addFilter(counter)
    try:
        results = lm_eval.simple_evaluate(
            model=backend,
            model_args=model_arguments(backend, model_dir, dtype, protocol),
            tasks=tasks,
            num_fewshot=None,  # global in lm-eval: each task YAML carries its own
            device=device,
            batch_size=protocol["batch_size"],
            limit=protocol["limit"],
            task_manager=TaskManager(include_path=str(Path(workdir).resolve()), include_defaults=False),
            log_samples=True,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    finally:
        hf_logger.removeFilter(counter)
    if counter.count:
        log.warning("%d requests were longer than the model's context and were truncated from the left", counter.count)
    return results, counter.count


def logged_prompts(samples: list[dict]) -> list[dict]:
    """lm-eval's logged samples as plain records, in item order: the exact prompt the
    model saw, the continuations scored against it, the gold index, the loglikelihoods."""
    records = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        # One request per choice, each (context, " " + choice): the context is shared.
        records.append(
            {
                "doc_id": sample["doc_id"],
                "id": sample["doc"]["id"],
                "prompt": sample["arguments"][0][0],
                "continuations": [arguments[1] for arguments in sample["arguments"]],
                "target": sample["target"],
                "loglikelihoods": [response[0][0] for response in sample["resps"]],
            }
        )
    return records


def score_record(
    results: dict, task: str, bench: str, lang: str, protocol: dict, config: dict, run: dict, prompts: list[dict]
) -> dict:
    """The score file of one benchmark: what was scored (`run`'s model and variant), lm-eval's
    metrics, shots, sample count, config, first prompts."""
    metrics = results["results"][task]
    n_shot = results["n-shot"][task]
    if n_shot != config["num_fewshot"]:
        raise RuntimeError(f"{task}: lm-eval used {n_shot} shots, the task asks for {config['num_fewshot']}")
    record = {
        "model": run.get("model"),
        "variant": run.get("variant"),
        "benchmark": bench,
        "language": lang,
        "task": task,
        "metrics": {name: metrics.get(f"{name},none") for name in METRICS},
        "n_shot": n_shot,
        "n_samples": results["n-samples"][task]["effective"],
        "n_items": results["n-samples"][task]["original"],
        "protocol": protocol[bench],
        "run": run,
        "task_config": results["configs"][task],
        "example_prompts": prompts[:EXAMPLE_PROMPTS],
    }
    # lm-eval's config may hold non-JSON values (callables): keep their text.
    return json.loads(json.dumps(record, default=str))


def evaluate_model(
    model_dir,
    benchmark_files: dict,
    protocol: dict,
    out_paths: dict,
    workdir,
    threads: int = 1,
    model: str | None = None,
    variant: str | None = None,
) -> dict:
    """Score one model on every benchmark of one language; write one JSON per benchmark.

    benchmark_files / out_paths: benchmark name -> normalised benchmark file / score file.
    model / variant: what the scores are of (written into each score file for the tables).
    protocol: the `evaluation` config block. Every logged prompt goes to
    {workdir}/{task}/samples.jsonl beside the task's YAML.
    """
    from okapi_pipeline.modeling import run_precision

    check_backend(protocol["backend"])
    # The one device/dtype rule (bf16 on a CUDA GPU that supports it, else float32).
    # lm-eval loads the model from model_args; its pad-token rule is ours (unk, else eos).
    precision = run_precision(threads)
    tasks, scores = {}, {}
    for bench, path in benchmark_files.items():
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if "unavailable" in data:
            # The benchmark data step marked it (benchmarks.strict is off): no score, the reason.
            scores[bench] = {
                "model": model,
                "variant": variant,
                "benchmark": bench,
                "language": data["language"],
                "unavailable": data["unavailable"],
            }
            write_json(out_paths[bench], scores[bench])
            log.warning("%s %s not scored: %s", bench, data["language"], data["unavailable"])
            continue
        name, config = write_task(bench, path, protocol[bench], workdir)
        tasks[bench] = (name, config, config["metadata"]["language"])
    if not tasks:
        return scores
    device, dtype = precision.device, precision.dtype_name
    log.info("scoring %s on %s (%s, %s)", model_dir, ", ".join(t[0] for t in tasks.values()), device, dtype)
    results, truncated = run_lm_eval(
        model_dir, [name for name, _, _ in tasks.values()], workdir, protocol, device, dtype
    )
    run = {
        "model": model,
        "variant": variant,
        "model_dir": str(model_dir),
        "backend": protocol["backend"],
        "device": device,
        "dtype": dtype,
        "batch_size": protocol["batch_size"],
        "seed": protocol["seed"],
        "limit": protocol["limit"],
        "lm_eval_version": version("lm_eval"),
        "truncated_requests": truncated,
    }
    for bench, (name, config, lang) in tasks.items():
        prompts = logged_prompts(results["samples"][name])
        write_jsonl(Path(workdir) / name / "samples.jsonl", prompts)
        scores[bench] = score_record(results, name, bench, lang, protocol, config, run, prompts)
        write_json(out_paths[bench], scores[bench])
        log.info(
            "%s: acc %.4f acc_norm %.4f (%d samples, %d-shot)",
            name,
            scores[bench]["metrics"]["acc"],
            scores[bench]["metrics"]["acc_norm"],
            scores[bench]["n_samples"],
            scores[bench]["n_shot"],
        )
    return scores
