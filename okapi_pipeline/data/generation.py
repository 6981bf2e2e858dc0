"""K sampled responses per prompt from the SFT model: the ranking stage's generation.

Two engines (`ranking.engine`): `hf` runs transformers' generate on the prompts
sorted by token length, longest first, in batches sized from the GPU's free memory
(a small fixed batch on CPU); `vllm` hands the prompts to vLLM in chunks. Either
way the answers are appended to a progress file, one JSON line per prompt and one
fsync per batch, that lives outside the job's declared output: a killed job, run
again, generates only the prompts not yet answered, and the output is written at the
end in the prompts' own order. Every line carries the key of the model, the prompts
file and the sampling settings, so answers of another run are never reused.
"""

import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.trainer import fingerprint

log = logging.getLogger(__name__)

ENGINES = ("hf", "vllm")
# The settings that change the samples, hence the progress key. The engine is not one:
# the answers of either are samples of the same settings.
SAMPLING_SETTINGS = ("responses_per_prompt", "seed", "max_new_tokens", "temperature", "top_p", "top_k")

# The share of the GPU memory left free by the loaded model that a batch's KV cache and
# logits may take: the rest covers the prefill's activations and allocator fragmentation.
MEMORY_SHARE = 0.8
# Bytes per vocabulary entry per sequence at a sampling step: the last position's logits
# in float32, the top-k/top-p warpers' sorted copy and int64 indices, the softmax.
LOGIT_BYTES = 32
# Beyond a few hundred sequences a step is compute-bound and larger batches gain little.
MAX_PROMPTS_PER_BATCH = 256
CPU_PROMPTS_PER_BATCH = 8
# vLLM batches by itself; a chunk is the unit of progress written to disk.
VLLM_CHUNK_PROMPTS = 1024


def check_engine(engine: str) -> None:
    """Fail in one line, before any work, when the engine is unknown or not installed."""
    if engine not in ENGINES:
        raise ValueError(f"ranking.engine: unknown engine {engine!r} ({' or '.join(ENGINES)})")
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise RuntimeError(
            "ranking.engine is vllm but the vllm package is not installed here "
            "(pip install vllm on a CUDA machine, or set ranking.engine: hf)"
        )


def generate_responses(model_dir, prompts_path, out_path, settings: dict, progress_path, threads: int = 1) -> dict:
    """K sampled responses per prompt, with the Alpaca template around the translated fields.

    Answers found in `progress_path` under this run's key are kept; the rest are
    generated; `out_path` gets every prompt once, in the prompts file's order, and the
    progress file is removed. Returns a summary: prompts, resumed, generated, batch sizes.
    """
    check_engine(settings["engine"])
    records = read_jsonl(prompts_path)
    key = progress_key(model_dir, prompts_path, settings)
    progress = ResponseProgress(progress_path, key)
    resumed = sum(index in progress.answers for index in range(len(records)))
    remaining = [index for index in range(len(records)) if index not in progress.answers]
    if resumed:
        log.info("resuming: %d of %d prompts already answered in %s", resumed, len(records), progress_path)
    batch_sizes = []
    if remaining:
        engine = generate_with_hf if settings["engine"] == "hf" else generate_with_vllm
        batch_sizes = engine(model_dir, records, remaining, settings, progress.append, threads)
    write_jsonl(out_path, [progress.answers[index] for index in range(len(records))])
    progress.remove()
    log.info("%d prompts x %d responses (%d resumed)", len(records), settings["responses_per_prompt"], resumed)
    return {"prompts": len(records), "resumed": resumed, "generated": len(remaining), "batch_sizes": batch_sizes}


def progress_key(model_dir, prompts_path, settings: dict) -> str:
    """What the answers depend on: the model, the prompts file and the sampling settings."""
    return fingerprint(model_dir, prompts_path, {name: settings[name] for name in SAMPLING_SETTINGS})


def answer(record: dict, responses: list[str]) -> dict:
    return {
        "id": record["id"],
        "instruction": record["instruction"],
        "input": record["input"],
        "responses": [text.strip() for text in responses],
    }


class ResponseProgress:
    """The answers so far, appended one JSON line per prompt ({key, index, record}).

    Lines of another key (model, prompts or settings changed) mean another run: the file
    is removed and generation starts afresh. A line cut short by a kill is ignored, and
    its prompt generated again.
    """

    def __init__(self, path, key: str):
        self.path, self.key = Path(path), key
        self.answers: dict[int, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        content = self.path.read_bytes()
        complete = content[: content.rfind(b"\n") + 1]
        if len(complete) < len(content):
            # A kill mid-write leaves a partial last line: cut it, so appends start on a line of their own.
            log.warning("%s: ignoring a last line cut short", self.path)
            os.truncate(self.path, len(complete))
        stale = unreadable = 0
        for line in complete.decode("utf-8").splitlines():
            try:
                entry = json.loads(line)
                if entry["key"] != self.key:
                    stale += 1
                    continue
                self.answers[entry["index"]] = entry["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                unreadable += 1
        if stale:
            log.info("removing %s: its answers are of another model, prompts file or sampling settings", self.path)
            self.path.unlink()
            self.answers = {}
        elif unreadable:
            log.warning("%s: ignoring %d unreadable line(s)", self.path, unreadable)

    def append(self, answers: dict[int, dict]) -> None:
        """Append one batch's answers and put them on disk before the next batch starts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"key": self.key, "index": index, "record": record}, ensure_ascii=False) + "\n"
            for index, record in answers.items()
        )
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self.answers.update(answers)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ---- batches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheShape:
    """What one token of one sequence costs in KV cache, and the vocabulary a step samples from."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    bytes_per_value: int

    @classmethod
    def of(cls, config, bytes_per_value: int) -> "CacheShape":
        """From a transformers model config (grouped-query attention: its key/value heads)."""
        heads = config.num_attention_heads
        return cls(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab_size=config.vocab_size,
            bytes_per_value=bytes_per_value,
        )

    def prompt_bytes(self, prompt_tokens: int, max_new_tokens: int, responses_per_prompt: int) -> int:
        """Memory for one prompt's K sequences at their longest: keys and values of every
        layer for prompt + new tokens, and a sampling step's logits."""
        kv_per_token = 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_value
        kv = kv_per_token * (prompt_tokens + max_new_tokens) * responses_per_prompt
        return kv + LOGIT_BYTES * self.vocab_size * responses_per_prompt


def prompts_per_batch(
    free_bytes: int,
    shape: CacheShape,
    prompt_tokens: int,
    max_new_tokens: int,
    responses_per_prompt: int,
    cap: int = MAX_PROMPTS_PER_BATCH,
) -> int:
    """How many prompts (of up to `prompt_tokens` tokens) fit in `free_bytes` at once, with
    the safety margin, at most `cap` and at least 1."""
    usable = free_bytes * MEMORY_SHARE
    fits = int(usable // shape.prompt_bytes(prompt_tokens, max_new_tokens, responses_per_prompt))
    return max(1, min(cap, fits))


def longest_first(lengths: dict[int, int]) -> list[int]:
    """Prompt indices by token length, longest first (file order among equals): batches of
    neighbours carry little padding, and an out-of-memory error shows in the first batch."""
    return sorted(lengths, key=lambda index: (-lengths[index], index))


def free_gpu_bytes(device) -> int:
    """Free memory on the GPU, counting what torch has cached but not allocated as free."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


# ---- engines -----------------------------------------------------------------------------


def generate_with_hf(model_dir, records: list[dict], indices: list[int], settings: dict, save, threads: int) -> list:
    """transformers' generate over the prompts at `indices`, longest first; `save` gets each
    batch's answers. A batch that runs out of GPU memory is halved and retried."""
    import torch

    from okapi_pipeline.training.modeling import load_for_generation

    tokenizer, model, precision = load_for_generation(model_dir, threads)
    k, max_new_tokens = settings["responses_per_prompt"], settings["max_new_tokens"]
    prompts = {index: alpaca_prompt(records[index]["instruction"], records[index]["input"]) for index in indices}
    encoded = tokenizer([prompts[index] for index in indices])["input_ids"]
    lengths = {index: len(ids) for index, ids in zip(indices, encoded)}
    order = longest_first(lengths)
    on_gpu = precision.device == "cuda"
    cap = MAX_PROMPTS_PER_BATCH if on_gpu else CPU_PROMPTS_PER_BATCH
    if on_gpu:
        free = free_gpu_bytes(model.device)
        shape = CacheShape.of(model.config, model.dtype.itemsize)
        log.info(
            "%.1f GB free on the GPU; the longest prompt (%d tokens) allows %d prompts a batch",
            free / 1e9,
            lengths[order[0]],
            prompts_per_batch(free, shape, lengths[order[0]], max_new_tokens, k, cap),
        )
    batch_sizes, position = [], 0
    while position < len(order):
        size = prompts_per_batch(free, shape, lengths[order[position]], max_new_tokens, k, cap) if on_gpu else cap
        batch = order[position : position + size]
        started = time.perf_counter()
        try:
            responses = sample_batch(model, tokenizer, [prompts[index] for index in batch], settings, batch[0])
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            cap = len(batch) // 2
            log.warning("out of memory with %d prompts a batch: retrying with at most %d", len(batch), cap)
            torch.cuda.empty_cache()
            continue
        save({index: answer(records[index], texts) for index, texts in zip(batch, responses)})
        batch_sizes.append(len(batch))
        position += len(batch)
        log.info(
            "%d/%d prompts: a batch of %d (up to %d tokens) in %.1f s",
            position,
            len(order),
            len(batch),
            lengths[batch[0]],
            time.perf_counter() - started,
        )
    return batch_sizes


def sample_batch(model, tokenizer, prompts: list[str], settings: dict, batch_seed: int) -> list[list[str]]:
    """K sampled responses for each prompt of one batch.

    The seed is the run's plus `batch_seed` (the batch's first prompt index): a job that
    resumes after a kill samples the same batches as a run that was never stopped.
    """
    import torch

    k = settings["responses_per_prompt"]
    torch.manual_seed(settings["seed"] + batch_seed)
    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        output = model.generate(
            **encoded,
            do_sample=True,
            num_return_sequences=k,
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            top_k=settings["top_k"],
            max_new_tokens=settings["max_new_tokens"],
            # An empty response gives no pair to learn from.
            min_new_tokens=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    return [texts[n * k : (n + 1) * k] for n in range(len(prompts))]


def vllm_sampling(settings: dict, seed: int) -> dict:
    """vLLM SamplingParams arguments for the `ranking` settings (one seed per prompt)."""
    return {
        "n": settings["responses_per_prompt"],
        "temperature": settings["temperature"],
        "top_p": settings["top_p"],
        # transformers' top_k 0 means no top-k filtering; vLLM's is -1 (it refuses 0).
        "top_k": settings["top_k"] or -1,
        "max_tokens": settings["max_new_tokens"],
        "min_tokens": 1,
        "seed": seed,
    }


def generate_with_vllm(model_dir, records: list[dict], indices: list[int], settings: dict, save, threads: int) -> list:
    """vLLM over the prompts at `indices`, VLLM_CHUNK_PROMPTS at a time; `save` gets each chunk's answers."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), dtype="bfloat16", seed=settings["seed"])
    chunk_sizes = []
    for start in range(0, len(indices), VLLM_CHUNK_PROMPTS):
        chunk = indices[start : start + VLLM_CHUNK_PROMPTS]
        prompts = [alpaca_prompt(records[index]["instruction"], records[index]["input"]) for index in chunk]
        params = [SamplingParams(**vllm_sampling(settings, settings["seed"] + index)) for index in chunk]
        outputs = llm.generate(prompts, params)
        save(
            {
                index: answer(records[index], [completion.text for completion in output.outputs])
                for index, output in zip(chunk, outputs)
            }
        )
        chunk_sizes.append(len(chunk))
        log.info("%d/%d prompts", start + len(chunk), len(indices))
    return chunk_sizes
