"""tools/gpu_check.py as a command: every stage at the demo's sizes on CPU (so it cannot rot),
a failing stage and a hanging stage named."""

import json
import subprocess
import sys
import time

from tests.support.workflow import REPO

SCRIPT = REPO / "tools" / "gpu_check.py"


MODELS = ("tiny-llama", "tiny-bloom")


TRAINING = ("sft", "reward_model", "ppo", "dpo")


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
