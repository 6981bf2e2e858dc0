"""Scoring with lm-evaluation-harness under the paper's protocol (mlmm-evaluation).

One lm-eval call (hf or vllm backend, the model loaded once) scores a model on the
tasks okapi_pipeline.evaluation.lm_eval_tasks writes for each benchmark of a language; each
benchmark gets a score file with lm-eval's metrics, shots, sample counts, the run's
settings and its first prompts, and every logged prompt goes beside the task's YAML.
Backend, batch size, limit and seed come from the `evaluation` config block.
"""

import importlib.util
import json
import logging
import os
import shutil
from importlib.metadata import version
from pathlib import Path

from okapi_pipeline.evaluation.lm_eval_tasks import write_task
from okapi_pipeline.jsonl import write_json, write_jsonl

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
EXAMPLE_PROMPTS = 3
BACKENDS = ("hf", "vllm")


def model_arguments(backend: str, model_dir, dtype: str, protocol: dict) -> str:
    """lm-eval's model_args for the `evaluation.backend`.

    vllm scores the same loglikelihoods from prompt logprobs, faster on a GPU; it
    needs CUDA, so on CPU (or with float32) hf is the backend to use. Both take
    `add_bos_token` (unset: the tokenizer's own habit).
    """
    bos = "" if protocol["add_bos_token"] is None else f",add_bos_token={protocol['add_bos_token']}"
    if backend == "hf":
        return f"pretrained={model_dir},dtype={dtype}{bos}"
    if backend == "vllm":
        return (
            f"pretrained={model_dir},dtype={dtype},tensor_parallel_size=1,"
            f"gpu_memory_utilization={protocol['gpu_memory_utilization']},"
            f"seed={protocol['seed']}{bos}"
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


def run_lm_eval(
    model_dir, tasks: list[str], workdir, protocol: dict, device: str, dtype: str, cache: Path
) -> tuple[dict, int]:
    """One lm-eval call for all tasks (the model is loaded once); also the truncation count.

    lm-eval keeps each answered request in the sqlite file `cache`*.db as it goes, so a
    run killed halfway answers only the rest when run again.
    """
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
            use_cache=str(cache),
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
    # They load torch: only a scoring run needs it, not the task files' writers and tests.
    from okapi_pipeline.training.modeling import run_precision
    from okapi_pipeline.training.trainer import fingerprint

    check_backend(protocol["backend"])
    # The one device/dtype rule (bf16 on a CUDA GPU that supports it, else float32).
    # lm-eval loads the model from model_args: a trained model's tokenizer carries the pad load_tokenizer
    # chose; a base model gets lm-eval's own rule (unk, else eos), which only pads loglikelihood batches.
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
    # Answers of a killed run of this model, run the same way, are reused (lm-eval's cache);
    # a retrained model or another dtype starts a new cache.
    caches = Path(workdir) / "lm_eval_cache"
    cache = caches / fingerprint(model_dir, model_arguments(protocol["backend"], model_dir, dtype, protocol), device)
    results, truncated = run_lm_eval(
        model_dir, [name for name, _, _ in tasks.values()], workdir, protocol, device, dtype, cache
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
    shutil.rmtree(caches)
    return scores
