"""Response generation: batches sorted by length and sized from memory, resumable progress, engines."""

import importlib.machinery
import importlib.util
import json
import sys
import types
from types import SimpleNamespace

import pytest

from okapi_pipeline.data import generation
from okapi_pipeline.data.generation import (
    CacheShape,
    ResponseProgress,
    check_engine,
    generate_responses,
    longest_first,
    progress_key,
    prompts_per_batch,
    vllm_sampling,
)
from okapi_pipeline.jsonl import read_jsonl, write_jsonl

GB = 10**9


SETTINGS = {
    "engine": "hf",
    "responses_per_prompt": 2,
    "max_new_tokens": 4,
    "temperature": 1.0,
    "top_p": 0.75,
    "top_k": 40,
    "seed": 0,
    # Ranking settings that change no sample.
    "prompt": "prompts/rank.txt",
    "llm": {},
}


# 12 prompts of different lengths, not in length order: two batches of the CPU's 8.
PROMPTS = [
    {
        "id": f"rm-{i:02d}",
        "instruction": "Give tips. " * (1 + (i * 5) % 12),
        "input": "" if i % 3 else "Con mèo ngồi trên tấm thảm. " * (i % 4 + 1),
    }
    for i in range(12)
]


def llama_7b_shape():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
    )
    return CacheShape.of(config, bytes_per_value=2)


# ---- batch sizes and order ------------------------------------------------------------


def test_a_7b_llama_fits_about_twice_the_prompts_on_141_gb_as_on_80_gb():
    shape = llama_7b_shape()
    # K = 4 sequences of 256 + 256 tokens: 2 (k, v) x 32 layers x 32 heads x 128 x 2 bytes
    # x 512 tokens x 4 = 1 GiB of KV cache, plus 4 x 32,000 x 32 bytes of sampling logits.
    assert shape.prompt_bytes(256, 256, 4) == 2**30 + 4 * 32000 * 32
    weights = 14 * GB  # bf16
    assert prompts_per_batch(80 * GB - weights, shape, 256, 256, 4) == 48
    assert prompts_per_batch(141 * GB - weights, shape, 256, 256, 4) == 94
    # Shorter prompts (later batches) fit more.
    assert prompts_per_batch(80 * GB - weights, shape, 64, 256, 4) == 78


def test_batch_size_follows_grouped_query_attention_and_stays_between_1_and_the_cap():
    from transformers import LlamaConfig

    llama3 = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    shape = CacheShape.of(llama3, bytes_per_value=2)
    assert (shape.kv_heads, shape.head_dim) == (8, 128)
    assert prompts_per_batch(64 * GB, shape, 256, 256, 4) == 179  # a quarter of LLaMA-7B's cache
    assert prompts_per_batch(125 * GB, shape, 256, 256, 4) == generation.MAX_PROMPTS_PER_BATCH
    assert prompts_per_batch(125 * GB, shape, 256, 256, 4, cap=16) == 16
    assert prompts_per_batch(GB // 10, shape, 256, 256, 4) == 1  # too little memory: one prompt, the error shows


def test_cache_shape_reads_bloom_and_qwen2_configs():
    from transformers import BloomConfig, Qwen2Config

    bloom = CacheShape.of(BloomConfig(hidden_size=4096, n_layer=30, n_head=32, vocab_size=250880), 2)
    assert bloom == CacheShape(layers=30, kv_heads=32, head_dim=128, vocab_size=250880, bytes_per_value=2)
    qwen = Qwen2Config(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064
    )
    assert CacheShape.of(qwen, 4) == CacheShape(28, 4, 128, 152064, 4)


def test_longest_first_puts_similar_lengths_together():
    lengths = {0: 12, 1: 300, 2: 15, 3: 290, 4: 300, 5: 11}
    order = longest_first(lengths)
    assert order == [1, 4, 3, 2, 0, 5]  # file order among equal lengths

    def padding(batches):
        return sum(max(lengths[i] for i in batch) - lengths[i] for batch in batches for i in batch)

    assert padding([order[:3], order[3:]]) == 17
    assert padding([[0, 1, 2], [3, 4, 5]]) == 872  # the same batches in file order


# ---- progress file ---------------------------------------------------------------------


def test_progress_key_changes_with_model_prompts_and_sampling_settings_only(tmp_path):
    model, other_model = tmp_path / "model", tmp_path / "other"
    for directory, size in ((model, 10), (other_model, 11)):
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"0" * size)
    prompts = tmp_path / "rm.jsonl"
    write_jsonl(prompts, PROMPTS)
    key = progress_key(model, prompts, SETTINGS)
    assert progress_key(other_model, prompts, SETTINGS) != key
    for name, value in (("seed", 1), ("responses_per_prompt", 3), ("max_new_tokens", 5), ("top_p", 0.9)):
        assert progress_key(model, prompts, {**SETTINGS, name: value}) != key, name
    for name, value in (("engine", "vllm"), ("prompt", "prompts/other.txt"), ("llm", {"model": "x"})):
        assert progress_key(model, prompts, {**SETTINGS, name: value}) == key, name
    write_jsonl(prompts, PROMPTS[:-1])
    assert progress_key(model, prompts, SETTINGS) != key


def test_progress_ignores_a_line_cut_short_and_drops_another_runs_answers(tmp_path):
    path = tmp_path / "progress.jsonl"
    progress = ResponseProgress(path, "run-a")
    progress.append({0: {"id": "a"}, 1: {"id": "b"}})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"key": "run-a", "index": 2, "rec')  # killed mid-write
    resumed = ResponseProgress(path, "run-a")
    assert resumed.answers == {0: {"id": "a"}, 1: {"id": "b"}}
    resumed.append({2: {"id": "c"}})
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 1, 2]
    assert ResponseProgress(path, "run-a").answers == {0: {"id": "a"}, 1: {"id": "b"}, 2: {"id": "c"}}
    assert ResponseProgress(path, "run-b").answers == {}
    assert not path.exists()


# ---- engines -----------------------------------------------------------------------------


def hide_vllm(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a)
    )


def test_vllm_chosen_but_not_installed_fails_in_one_line_before_any_work(tmp_path, monkeypatch):
    hide_vllm(monkeypatch)
    with pytest.raises(RuntimeError) as error:
        # Neither the model nor the prompts exist: nothing is read before the check.
        generate_responses(
            tmp_path / "no-model",
            tmp_path / "no-prompts.jsonl",
            tmp_path / "out.jsonl",
            {**SETTINGS, "engine": "vllm"},
            tmp_path / "p",
        )
    assert str(error.value).startswith("ranking.engine is vllm but the vllm package is not installed")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        check_engine("tgi")


def test_vllm_sampling_arguments():
    assert vllm_sampling({**SETTINGS, "top_k": 0}, seed=7) == {
        "n": 2,
        "temperature": 1.0,
        "top_p": 0.75,
        "top_k": -1,  # vLLM's "no top-k"; it refuses 0
        "max_tokens": 4,
        "min_tokens": 1,
        "seed": 7,
    }
    assert vllm_sampling(SETTINGS, seed=7)["top_k"] == 40


def fake_vllm(calls: list) -> types.ModuleType:
    """vLLM's offline API as the engine uses it: LLM(...).generate(prompts, [SamplingParams]) ->
    outputs in prompt order, each with n completions."""
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)

    class LLM:
        def __init__(self, model, dtype, seed):
            calls.append(("load", model, dtype))

        def generate(self, prompts, params):
            calls.append(("generate", prompts, params))
            return [
                SimpleNamespace(outputs=[SimpleNamespace(text=f" {p['seed']}/{n}") for n in range(p["n"])])
                for p in params
            ]

    module.LLM, module.SamplingParams = LLM, dict
    return module


def test_vllm_engine_writes_progress_per_chunk_and_resumes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(calls))
    monkeypatch.setattr(generation, "VLLM_CHUNK_PROMPTS", 5)
    write_jsonl(tmp_path / "rm.jsonl", PROMPTS)
    model = tmp_path / "model"
    model.mkdir()
    settings = {**SETTINGS, "engine": "vllm", "seed": 100}
    progress = tmp_path / "progress.jsonl"
    # Answers of the first chunk are on disk, as after a kill during the second.
    key = progress_key(model, tmp_path / "rm.jsonl", settings)
    ResponseProgress(progress, key).append({i: generation.answer(PROMPTS[i], ["x", "y"]) for i in range(5)})

    summary = generate_responses(model, tmp_path / "rm.jsonl", tmp_path / "out.jsonl", settings, progress)

    assert summary == {"prompts": 12, "resumed": 5, "generated": 7, "batch_sizes": [5, 2]}
    generated = [call for call in calls if call[0] == "generate"]
    assert [len(call[1]) for call in generated] == [5, 2]
    assert [p["seed"] for p in generated[0][2]] == [105, 106, 107, 108, 109]  # one seed per prompt
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [record["id"] for record in out] == [record["id"] for record in PROMPTS]
    assert out[0]["responses"] == ["x", "y"] and out[11]["responses"] == ["111/0", "111/1"]
    assert not progress.exists()


# ---- the hf engine on the tiny model ---------------------------------------------------


SAMPLE_BATCH = generation.sample_batch


class Recorder:
    """Wraps generation.sample_batch: records each batch, and raises after `fail_after` batches."""

    def __init__(self, patch, fail_after=None):
        self.batches, self.fail_after = [], fail_after
        patch.setattr(generation, "sample_batch", self)

    def __call__(self, model, tokenizer, prompts, settings, batch_seed):
        if self.fail_after is not None and len(self.batches) == self.fail_after:
            raise RuntimeError("killed")
        self.batches.append(prompts)
        return SAMPLE_BATCH(model, tokenizer, prompts, settings, batch_seed)

    @property
    def prompts(self):
        return sum(len(batch) for batch in self.batches)


def run(model_dir, tmp_path, settings=SETTINGS, out="out.jsonl"):
    write_jsonl(tmp_path / "rm.jsonl", PROMPTS)
    return generate_responses(
        model_dir, tmp_path / "rm.jsonl", tmp_path / out, settings, tmp_path / "progress.jsonl", threads=1
    )


def check_complete(path, k=SETTINGS["responses_per_prompt"]):
    records = read_jsonl(path)
    assert [record["id"] for record in records] == [record["id"] for record in PROMPTS]
    assert all(len(record["responses"]) == k and all(record["responses"]) for record in records)
    return records


@pytest.fixture(scope="module")
def uninterrupted(tiny_llama_dir, tmp_path_factory):
    """The answers and batches of a run that was never stopped."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        recorder = Recorder(patch)
        summary = run(tiny_llama_dir, directory)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    return SimpleNamespace(
        summary=summary,
        batches=recorder.batches,
        records=read_jsonl(directory / "out.jsonl"),
        length=lambda prompt: len(tokenizer(prompt)["input_ids"]),
    )


def test_batches_are_the_longest_prompts_first(uninterrupted):
    assert uninterrupted.summary == {"prompts": 12, "resumed": 0, "generated": 12, "batch_sizes": [8, 4]}
    first, second = ([uninterrupted.length(p) for p in batch] for batch in uninterrupted.batches)
    assert first == sorted(first, reverse=True) and min(first) >= max(second)


def test_a_killed_run_resumes_and_generates_only_the_rest(tiny_llama_dir, tmp_path, monkeypatch, uninterrupted):
    Recorder(monkeypatch, fail_after=1)
    with pytest.raises(RuntimeError, match="killed"):
        run(tiny_llama_dir, tmp_path)
    assert not (tmp_path / "out.jsonl").exists()
    assert len((tmp_path / "progress.jsonl").read_text().splitlines()) == 8

    recorder = Recorder(monkeypatch)
    summary = run(tiny_llama_dir, tmp_path)
    assert recorder.prompts == 4 and summary["resumed"] == 8
    # Every prompt once, in the prompts' order, with the samples of a run never stopped.
    assert check_complete(tmp_path / "out.jsonl") == uninterrupted.records
    assert not (tmp_path / "progress.jsonl").exists()


def test_a_last_line_cut_short_is_generated_again(tiny_llama_dir, tmp_path, monkeypatch, uninterrupted):
    Recorder(monkeypatch, fail_after=1)
    with pytest.raises(RuntimeError):
        run(tiny_llama_dir, tmp_path)
    progress = tmp_path / "progress.jsonl"
    lines = progress.read_text().splitlines(keepends=True)
    progress.write_text("".join(lines[:-1]) + lines[-1][:30])  # the last answer's write cut short

    recorder = Recorder(monkeypatch)
    assert run(tiny_llama_dir, tmp_path)["resumed"] == 7
    assert recorder.prompts == 5
    check_complete(tmp_path / "out.jsonl")


@pytest.mark.parametrize("change", ["seed", "model"])
def test_progress_of_another_model_or_settings_is_not_reused(
    change, tiny_llama_dir, tiny_bloom_dir, tmp_path, monkeypatch, uninterrupted
):
    Recorder(monkeypatch, fail_after=1)
    with pytest.raises(RuntimeError):
        if change == "seed":
            run(tiny_llama_dir, tmp_path, {**SETTINGS, "seed": 1})
        else:
            run(tiny_bloom_dir, tmp_path)
    assert len((tmp_path / "progress.jsonl").read_text().splitlines()) == 8

    recorder = Recorder(monkeypatch)
    assert run(tiny_llama_dir, tmp_path)["resumed"] == 0
    assert recorder.prompts == 12
    assert check_complete(tmp_path / "out.jsonl") == uninterrupted.records


def test_out_of_memory_halves_the_batch(tiny_llama_dir, tmp_path, monkeypatch):
    import torch

    def small_memory(model, tokenizer, prompts, settings, batch_seed):
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return SAMPLE_BATCH(model, tokenizer, prompts, settings, batch_seed)

    monkeypatch.setattr(generation, "sample_batch", small_memory)
    assert run(tiny_llama_dir, tmp_path)["batch_sizes"] == [2] * 6
    check_complete(tmp_path / "out.jsonl")
