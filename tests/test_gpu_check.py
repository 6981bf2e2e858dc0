"""tools/gpu_check.py: the one-command GPU check, run here at the demo's sizes on CPU so it cannot rot."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_check.py"
MODELS = ("tiny-llama", "tiny-bloom")
TRAINING = ("sft", "reward_model", "ppo", "dpo")


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_check(tmp_path, *arguments, timeout=900) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out), "--work", str(tmp_path / "work"), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return process, json.loads(out.read_text())


def by_name(report: dict) -> dict:
    return {(stage["model"], stage["stage"]): stage for stage in report["stages"]}


# ---- the whole check -------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_check_runs_every_stage_and_passes_on_cpu(tmp_path):
    process, report = run_check(tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert report["ok"] and report["failed"] == []
    stages = by_name(report)
    assert stages[("-", "setup")]["status"] == "ok" and report["device"]["gpus"] == 0
    for model in MODELS:
        assert stages[(model, "build")]["status"] == "ok"
        for stage in (*TRAINING, "evaluate_hf", "generate"):
            result = stages[(model, stage)]
            assert result["status"] == "ok", (model, stage, result.get("error"))
            assert result["compute_dtype"] == "float32"  # no bf16 on a CPU
            assert result["peak_memory_gb"] > 0 and result["memory_kind"] == "RSS"
        for stage in (*TRAINING, "generate"):
            assert stages[(model, stage)]["tokens_per_s"] > 0
        for stage in TRAINING:
            assert 0 < stages[(model, stage)]["step_time_s"] < 60
        for stage in ("reward_model", "ppo", "dpo"):
            result = stages[(model, stage)]
            assert result["frozen_identical"] is True and result["frozen_tensors"] > 0
            assert result["top_blocks_changed"] is True  # so the comparison is not vacuous
        assert stages[(model, "sft")]["steps"] == 3
        assert stages[(model, "sft")]["mfu"] is None  # no bf16 peak for a CPU
        assert stages[(model, "evaluate_hf")]["items_per_s"] > 0
        assert stages[(model, "evaluate_hf")]["items"] > 0
        # Paths this machine cannot take are reported as skipped, with the reason.
        assert stages[(model, "evaluate_vllm")]["status"] == "skipped"
        assert "GPU" in stages[(model, "sft_multi_gpu")]["reason"]
    assert "tokens/s" in process.stdout and "reward_model" in process.stdout
    assert not (tmp_path / "work" / "models" / "tiny-llama").exists()  # removed after its stages


# ---- failures are named and stop nothing else ---------------------------------------------------


def test_a_failing_stage_fails_the_run_and_is_named(tmp_path):
    process, report = run_check(tmp_path, "--models", "tiny-llama", "--inject", "build=fail", timeout=300)
    assert process.returncode == 1
    assert "tiny-llama/build" in process.stderr and "failure injected" in process.stderr
    stages = by_name(report)
    assert stages[("-", "setup")]["status"] == "ok"
    assert stages[("tiny-llama", "build")]["status"] == "failed"
    assert report["failed"] == ["tiny-llama/build"] and not report["ok"]
    assert {stages[("tiny-llama", stage)]["status"] for stage in TRAINING} == {"skipped"}


def test_a_hanging_stage_is_stopped_at_its_time_limit(tmp_path):
    started = time.time()
    process, report = run_check(tmp_path, "--inject", "setup=hang", "--stage-timeout", "3", timeout=300)
    assert time.time() - started < 60
    assert process.returncode == 1
    setup = by_name(report)[("-", "setup")]
    assert setup["status"] == "timeout" and "3 s" in setup["error"]
    assert "setup (timeout" in process.stderr
    assert by_name(report)[("tiny-llama", "sft")]["reason"] == "the setup stage failed"


# ---- the pieces -----------------------------------------------------------------------------


def test_the_bf16_peak_is_found_by_device_name():
    tool = gpu_check()
    assert tool.peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert tool.peak_tflops("NVIDIA H100 PCIe") == 756
    assert tool.peak_tflops("NVIDIA H200") == 989
    assert tool.peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert tool.peak_tflops("NVIDIA A10G") == 125
    assert tool.peak_tflops("NVIDIA L40S") == 362
    assert tool.peak_tflops("NVIDIA L4") == 121
    assert tool.peak_tflops("NVIDIA GeForce RTX 4090") == 165
    assert tool.peak_tflops("Tesla V100-SXM2-16GB") is None and tool.peak_tflops(None) is None
    # 6 x 1e9 parameters x 10,000 tokens/s = 60 TFLOPS of 989.
    assert tool.model_flops_utilisation(6 * 10**9, 10_000, "NVIDIA H100 80GB HBM3", 1) == pytest.approx(60 / 989)
    assert tool.model_flops_utilisation(6 * 10**9, 10_000, "NVIDIA H100 80GB HBM3", 2) == pytest.approx(30 / 989)
    assert tool.model_flops_utilisation(6 * 10**9, 10_000, "Tesla V100-SXM2-16GB", 1) is None


def test_training_flops_count_what_trains_and_the_reference_forward():
    tool = gpu_check()
    billion = 10**9
    assert tool.training_flops_per_token("sft", 7 * billion, 7 * billion) == 6 * 7 * billion
    # Top blocks and embeddings train: the backward still runs through the whole model,
    # weight gradients only for a third of it.
    assert tool.training_flops_per_token("reward_model", 6 * billion, 2 * billion) == (24 + 4) * billion
    # DPO: the policy's forward and backward, and the reference model's forward.
    assert tool.training_flops_per_token("dpo", 6 * billion, 6 * billion) == 8 * 6 * billion


def test_utilisation_is_reported_for_sft_the_reward_model_and_dpo():
    tool = gpu_check()
    result = {"status": "ok", "parameters": 10**9, "trainable_parameters": 10**9 // 2, "tokens_per_s": 10_000}
    stages = [{"model": "m", "stage": name, **result} for name in ("sft", "reward_model", "dpo", "ppo")]
    stages.append({"model": "m", "stage": "sft", "status": "failed"})
    tool.add_utilisation(stages, {"names": ["NVIDIA H200"]})
    mfu = {stage["stage"]: stage.get("mfu") for stage in stages[:4]}
    assert mfu["sft"] == pytest.approx(5 * 10**9 * 10_000 / 989e12)  # 4 N + 2 T
    assert mfu["reward_model"] == mfu["sft"]
    assert mfu["dpo"] == pytest.approx(7 * 10**9 * 10_000 / 989e12)  # and the reference forward
    assert mfu["ppo"] is None and "mfu" not in stages[4]


def test_paper_sizes_keep_the_paper_shapes_and_cut_only_the_steps():
    tool = gpu_check()
    config, _ = tool.load_config("7b")
    sft, examples = tool.training_settings(config, "sft", steps=3, ppo_rounds=1)
    assert examples == 3 * config["sft"]["effective_batch_size"]
    assert sft["epochs"] == 1 and sft["held_out_fraction"] == 0
    for key in ("max_length", "per_device_batch_size", "effective_batch_size", "learning_rate"):
        assert sft[key] == config["sft"][key]
    ppo, prompts = tool.training_settings(config, "ppo", steps=3, ppo_rounds=1, ppo_processes=7)
    # One GPU runs one of the original's 7 processes' share of a round.
    assert ppo["rollout_batch_size"] * 7 == config["ppo"]["rollout_batch_size"] == prompts * 7
    assert ppo["mini_batch_size"] * 7 == config["ppo"]["mini_batch_size"]
    for key in ("max_prompt_length", "response_length", "trainable_top_blocks", "num_ppo_epochs"):
        assert ppo[key] == config["ppo"][key]
    rm, _ = tool.training_settings(config, "reward_model", steps=3, ppo_rounds=1)
    assert rm["trainable_top_blocks"] == config["reward_model"]["trainable_top_blocks"]
    assert tool.SHAPES["7b"]["llama-7b"]["num_layers"] == 32 and tool.SHAPES["7b"]["bloom-7b1"]["num_layers"] == 30


def test_the_frozen_check_catches_a_changed_lower_block(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tool = gpu_check()
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
    assert tool.frozen_blocks_check(tmp_path / "before", top, 1, False) == {
        "frozen_tensors": 18,
        "frozen_identical": True,
        "changed_frozen": [],
        "top_blocks_changed": True,
    }
    lower = changed("model.layers.2.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight")
    result = tool.frozen_blocks_check(tmp_path / "before", lower, 1, False)
    assert not result["frozen_identical"] and result["changed_frozen"] == ["model.layers.0.self_attn.q_proj.weight"]
    # The embeddings count as frozen only when the stage freezes them.
    embeddings = changed("model.embed_tokens.weight")
    assert tool.frozen_blocks_check(tmp_path / "before", embeddings, 1, False)["frozen_identical"]
    assert not tool.frozen_blocks_check(tmp_path / "before", embeddings, 1, True)["frozen_identical"]
