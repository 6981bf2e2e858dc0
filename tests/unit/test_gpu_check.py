"""okapi_pipeline.gpu_check on plain numbers: peaks, FLOPs, step times, the frozen check,
skipped stages, the measured table."""

import json
from pathlib import Path

import pandas as pd
import pytest

from okapi_pipeline.cluster.gpu_jobs import COLUMNS, peak_tflops
from okapi_pipeline.gpu_check.frozen import frozen_blocks_check, is_frozen
from okapi_pipeline.gpu_check.instruments import GenerationCounter, StepTimer
from okapi_pipeline.gpu_check.measures import (
    add_utilisation,
    dtype_problems,
    model_flops_utilisation,
    single_device_measures,
    step_timing,
    training_flops_per_token,
)
from okapi_pipeline.gpu_check.report import finish, new_report
from okapi_pipeline.gpu_check.runner import log_error, skip_reason
from okapi_pipeline.gpu_check.settings import load_config, training_settings
from okapi_pipeline.gpu_check.shapes import SHAPES, chosen

# ---- the pieces -----------------------------------------------------------------------------


def test_the_bf16_peak_is_found_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert peak_tflops("NVIDIA H100 PCIe") == 756
    assert peak_tflops("NVIDIA H200") == 989
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert peak_tflops("NVIDIA A10G") == 125
    assert peak_tflops("NVIDIA L40S") == 362
    assert peak_tflops("NVIDIA L4") == 121
    assert peak_tflops("NVIDIA GeForce RTX 4090") == 165
    assert peak_tflops("Tesla V100-SXM2-16GB") is None and peak_tflops(None) is None
    # 6 x 1e9 parameters x 10,000 tokens/s = 60 TFLOPS of 989.
    assert model_flops_utilisation(6 * 10**9, 10_000, "NVIDIA H100 80GB HBM3", 1) == pytest.approx(60 / 989)
    assert model_flops_utilisation(6 * 10**9, 10_000, "NVIDIA H100 80GB HBM3", 2) == pytest.approx(30 / 989)
    assert model_flops_utilisation(6 * 10**9, 10_000, "Tesla V100-SXM2-16GB", 1) is None


def test_training_flops_count_what_trains_and_the_reference_forward():
    billion = 10**9
    assert training_flops_per_token("sft", 7 * billion, 7 * billion) == 6 * 7 * billion
    # Top blocks and embeddings train: the backward still runs through the whole model,
    # weight gradients only for a third of it.
    assert training_flops_per_token("reward_model", 6 * billion, 2 * billion) == (24 + 4) * billion
    # DPO: the policy's forward and backward, and the reference model's forward.
    assert training_flops_per_token("dpo", 6 * billion, 6 * billion) == 8 * 6 * billion


def test_utilisation_is_reported_for_sft_the_reward_model_and_dpo():
    result = {"status": "ok", "parameters": 10**9, "trainable_parameters": 10**9 // 2, "tokens_per_s": 10_000}
    stages = [{"model": "m", "stage": name, **result} for name in ("sft", "reward_model", "dpo", "ppo")]
    stages.append({"model": "m", "stage": "sft", "status": "failed"})
    add_utilisation(stages, {"names": ["NVIDIA H200"]})
    mfu = {stage["stage"]: stage.get("mfu") for stage in stages[:4]}
    assert mfu["sft"] == pytest.approx(5 * 10**9 * 10_000 / 989e12)  # 4 N + 2 T
    assert mfu["reward_model"] == mfu["sft"]
    assert mfu["dpo"] == pytest.approx(7 * 10**9 * 10_000 / 989e12)  # and the reference forward
    assert mfu["ppo"] is None and "mfu" not in stages[4]


def test_paper_sizes_keep_the_paper_shapes_and_cut_only_the_steps():
    config, _ = load_config("7b")
    sft, examples = training_settings(config, "sft", steps=3, ppo_rounds=1)
    assert examples == 3 * config["sft"]["effective_batch_size"]
    assert sft["epochs"] == 1 and sft["held_out_fraction"] == 0
    for key in ("max_length", "per_device_batch_size", "effective_batch_size", "learning_rate"):
        assert sft[key] == config["sft"][key]
    ppo, prompts = training_settings(config, "ppo", steps=3, ppo_rounds=1, ppo_processes=7)
    # One GPU runs one of the original's 7 processes' share of a round.
    assert ppo["rollout_batch_size"] * 7 == config["ppo"]["rollout_batch_size"] == prompts * 7
    assert ppo["mini_batch_size"] * 7 == config["ppo"]["mini_batch_size"]
    for key in ("max_prompt_length", "response_length", "trainable_top_blocks", "num_ppo_epochs"):
        assert ppo[key] == config["ppo"][key]
    rm, _ = training_settings(config, "reward_model", steps=3, ppo_rounds=1)
    assert rm["trainable_top_blocks"] == config["reward_model"]["trainable_top_blocks"]
    assert SHAPES["7b"]["llama-7b"]["num_layers"] == 32 and SHAPES["7b"]["bloom-7b1"]["num_layers"] == 30


def test_the_frozen_check_catches_a_changed_lower_block(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "before")

    def changed(*names) -> Path:
        out = tmp_path / "-".join(names)
        state = {name: value.clone() for name, value in model.state_dict().items()}
        for name in names:
            state[name] += 1e-3
        LlamaForCausalLM.from_pretrained(tmp_path / "before").save_pretrained(out, state_dict=state)
        return out

    top = changed("model.layers.2.mlp.up_proj.weight")
    assert frozen_blocks_check(tmp_path / "before", top, 1, False) == {
        "frozen_tensors": 18,
        "frozen_identical": True,
        "changed_frozen": [],
        "top_blocks_changed": True,
    }
    lower = changed("model.layers.2.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight")
    result = frozen_blocks_check(tmp_path / "before", lower, 1, False)
    assert not result["frozen_identical"] and result["changed_frozen"] == ["model.layers.0.self_attn.q_proj.weight"]
    # The embeddings count as frozen only when the stage freezes them.
    embeddings = changed("model.embed_tokens.weight")
    assert frozen_blocks_check(tmp_path / "before", embeddings, 1, False)["frozen_identical"]
    assert not frozen_blocks_check(tmp_path / "before", embeddings, 1, True)["frozen_identical"]


# ---- the arithmetic, on plain numbers ---------------------------------------------------------


def test_the_step_time_is_the_median_after_the_warm_up_step():
    # Steps of 2 s (warm-up), 1 s, 1.5 s, 1 s; 400 tokens in all.
    timing = step_timing(10.0, [12.0, 13.0, 14.5, 15.5], 400)
    assert timing == {
        "step_time_s": 1.0,
        "first_step_s": 2.0,
        "timed_steps": 4,
        "train_loop_s": 5.5,
        "tokens_per_step": 100.0,
        "tokens_per_s": 100.0,
    }
    # One step is all there is: it is the step time, warm-up and all.
    assert step_timing(0.0, [2.0], 50)["tokens_per_s"] == 25.0
    with pytest.raises(RuntimeError, match="no optimizer step"):
        step_timing(0.0, [], 50)


def timer_with(marks: list[float], train: set, no_grad: set = frozenset(), num_tokens=None) -> StepTimer:
    timer = StepTimer()
    timer.begin, timer.marks, timer.num_tokens = 0.0, marks, num_tokens
    timer.dtypes = {"train": set(train), "no_grad": set(no_grad)}
    return timer


def test_a_ppo_step_is_a_round_and_counts_the_rollouts_tokens():
    generation = GenerationCounter()
    generation.seconds, generation.prompt_tokens, generation.new_tokens = 6.0, 3000, 1000
    settings = {"rollout_batch_size": 128, "mini_batch_size": 1, "num_ppo_epochs": 4}
    timer = timer_with([10.0], {"float32"}, {"bfloat16"})
    measures = single_device_measures("ppo", settings, timer, generation, tokens=999_999)
    assert measures["tokens"] == 4000 and measures["tokens_per_s"] == 400.0
    assert measures["optimizer_steps_per_round"] == 512
    assert measures["rollout_dtype"] == "bfloat16" and measures["compute_dtype"] == "float32"
    assert measures["generation_s"] == 6.0
    assert measures["note"] == "step = 1 round: 128 rollouts, 512 optimizer steps; generation 6.0 s"


def test_sft_counts_trls_tokens_when_trl_reports_them():
    generation = GenerationCounter()
    with_count = single_device_measures(
        "sft", {}, timer_with([1.0, 2.0], {"bfloat16"}, num_tokens=300), generation, 512
    )
    assert with_count["tokens"] == 300 and with_count["tokens_per_s"] == 150.0  # padding excluded
    without = single_device_measures("sft", {}, timer_with([1.0, 2.0], {"bfloat16"}), generation, 512)
    assert without["tokens"] == 512 and without["compute_dtype"] == "bfloat16"


def test_bf16_is_expected_exactly_where_the_gpu_supports_it():
    h200 = {"gpus": 1, "bf16": True}
    assert dtype_problems("the training forward", "bfloat16", h200) == []
    assert dtype_problems("the training forward", "float32", h200) == [
        "the training forward ran in float32, expected bfloat16"
    ]
    assert dtype_problems("lm-eval", "float32", {"gpus": 1, "bf16": False}) == []  # a V100
    assert dtype_problems("generation", "bfloat16", {"gpus": 0}) == ["generation ran in bfloat16, expected float32"]
    assert dtype_problems("generation", None, {"gpus": 0}) == ["generation ran in None, expected float32"]


def test_ppo_keeps_its_batches_when_the_processes_do_not_divide_them():
    config = {
        "training": {"report_to": "none"},
        "ppo": {"rollout_batch_size": 10, "mini_batch_size": 5, "total_episodes": 1000},
    }
    settings, prompts = training_settings(config, "ppo", steps=3, ppo_rounds=2, ppo_processes=3)
    assert (settings["rollout_batch_size"], settings["mini_batch_size"]) == (10, 5)
    # The older schedule key is cut to the rounds asked for.
    assert settings["total_episodes"] == 20 and prompts == 20 and settings["report_to"] == "none"


def test_unknown_models_and_stages_are_one_line_errors():
    builds = SHAPES["1b"]
    assert chosen("1b", builds, "llama-1b", "sft,ppo") == ({"llama-1b": builds["llama-1b"]}, ["sft", "ppo"])
    with pytest.raises(SystemExit, match=r"unknown stage\(s\): rlhf \(known: sft,"):
        chosen("1b", builds, None, "sft,rlhf")
    with pytest.raises(SystemExit, match=r"unknown model\(s\) for --size 1b: llama-7b \(known: llama-1b, bloom-1b1\)"):
        chosen("1b", builds, "llama-7b", None)


def test_stages_this_machine_cannot_run_are_skipped_with_the_reason():
    cpu, one_gpu, two_gpus = {"gpus": 0}, {"gpus": 1}, {"gpus": 2}
    assert skip_reason("evaluate_vllm", cpu) == "vllm needs a CUDA GPU"
    assert skip_reason("sft_multi_gpu", one_gpu).startswith("1 GPU(s) visible")
    assert skip_reason("sft_multi_gpu", two_gpus) is None and skip_reason("sft", cpu) is None


def test_the_error_named_is_the_last_exception_line_of_the_log(tmp_path):
    log = tmp_path / "stage.log"
    log.write_text(
        'loading\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "ValueError: first\n\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\nexiting\n"
    )
    error, tail = log_error(log)
    assert error == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    assert tail[-1] == "exiting" and "" not in tail
    assert log_error(tmp_path / "missing.log") == ("no output", [])


def test_frozen_names_follow_the_block_lists_and_the_embeddings_setting():
    # 4 blocks, the top 1 trains.
    assert is_frozen("model.layers.2.mlp.up_proj.weight", 4, 1, False)
    assert not is_frozen("model.layers.3.mlp.up_proj.weight", 4, 1, False)
    assert is_frozen("transformer.h.0.self_attention.dense.weight", 4, 1, False)  # BLOOM
    assert not is_frozen("model.embed_tokens.weight", 4, 1, False)
    assert is_frozen("model.embed_tokens.weight", 4, 1, True)
    assert is_frozen("transformer.word_embeddings_layernorm.weight", 4, 1, True)
    for name in ("model.norm.weight", "transformer.ln_f.weight", "lm_head.weight", "score.weight"):
        assert not is_frozen(name, 4, 1, True), name


def h200_report(stages: list[dict]) -> dict:
    device = {"gpus": 1, "names": ["NVIDIA H200"], "memory_gb": [139.8], "bf16": True, "summary": "1 x NVIDIA H200"}
    return new_report("1b", 1_780_000_000.0, device, None, Path("/tmp/work"), stages)


def test_a_gpu_run_records_its_rates_and_mfu_in_the_measured_table(tmp_path, capsys):
    stages = [
        {"model": "-", "stage": "setup", "status": "ok", "wall_s": 3.0},
        {"model": "llama-1b", "stage": "build", "status": "ok", "parameters": 10**9, "wall_s": 20.0},
        {
            "model": "llama-1b",
            "stage": "sft",
            "status": "ok",
            "parameters": 10**9,
            "trainable_parameters": 10**9,
            "tokens_per_s": 40_000.0,
            "step_time_s": 0.8192,
            "peak_memory_gb": 30.04,
            "compute_dtype": "bfloat16",
            "wall_s": 60.0,
        },
        {"model": "llama-1b", "stage": "evaluate_vllm", "status": "skipped", "reason": "vllm is not installed"},
    ]
    table = tmp_path / "gpu_measurements.csv"
    table.write_text("# measured\n" + ",".join(COLUMNS) + "\n")
    report = h200_report(stages)
    assert report["ok"] and report["failed"] == []
    assert finish(report, tmp_path / "1b.json", table) == 0
    # 6 x 1e9 FLOPs a token x 40,000 tokens/s over the H200's 989 TFLOPS.
    assert report["stages"][2]["flops_per_token"] == 6 * 10**9
    assert report["stages"][2]["mfu"] == pytest.approx(0.24 / 0.989)
    rows = pd.read_csv(table, comment="#")
    assert rows[["model", "stage", "gpus", "tokens_per_s", "mfu", "precision", "peak_gb"]].to_dict("records") == [
        {
            "model": "llama-1b",
            "stage": "sft",
            "gpus": 1,
            "tokens_per_s": 40_000.0,
            "mfu": 0.243,
            "precision": "bf16",
            "peak_gb": 30.0,
        }
    ]
    printed = capsys.readouterr().out
    assert "1 row(s) appended to" in printed and "24.3" in printed  # the MFU % column
    assert json.loads((tmp_path / "1b.json").read_text())["stages"][2]["mfu"] == pytest.approx(0.2427, abs=1e-4)


def test_failed_and_timed_out_stages_fail_the_run_by_name(tmp_path, capsys):
    stages = [
        {"model": "-", "stage": "setup", "status": "ok"},
        {"model": "llama-1b", "stage": "sft", "status": "failed", "error": "CUDA out of memory"},
        {"model": "llama-1b", "stage": "dpo", "status": "timeout", "error": "no result after the 240 s time limit"},
    ]
    report = h200_report(stages)
    assert report["failed"] == ["llama-1b/sft", "llama-1b/dpo"] and not report["ok"]
    assert "mfu" not in report["stages"][1]  # only for a stage that ran
    assert finish(report, tmp_path / "1b.json", None) == 1
    assert capsys.readouterr().err.strip() == (
        "gpu_check: FAILED: llama-1b/sft (failed: CUDA out of memory); "
        "llama-1b/dpo (timeout: no result after the 240 s time limit)"
    )
