"""Runtimes from the measured table: work over rate, scaled, with the margin; GPUs per job."""

import math

import pandas as pd
import pytest

from okapi_pipeline.cluster.gpu_jobs import (
    MARGIN,
    SCALING_EFFICIENCY,
    UNKNOWN_MODEL_PARAMETERS,
    append_measurements,
    built_model_parameters,
    gpu_job,
    measurement_rows,
    model_gpu_job,
    model_parameters,
    read_measurements,
    runtime,
    stage_rate,
    stage_work,
)
from okapi_pipeline.config import ConfigError, load_schema, validate_config
from tests.support.workflow import REPO, merged_config

H200 = {"gpu": "H200", "gpu_memory_gb": 141, "gpus_per_node": 8, "max_job_hours": 48}


ROWS = pd.DataFrame(
    [
        {"date": "d", "gpu": "NVIDIA H200", "gpus": 1, "model": "m-7b", "parameters": 7e9, "stage": "sft",
         "tokens_per_s": 4000.0, "items_per_s": None},
        {"date": "d", "gpu": "NVIDIA H200", "gpus": 1, "model": "m-1b", "parameters": 1e9, "stage": "sft",
         "tokens_per_s": 20000.0, "items_per_s": None},
        {"date": "d", "gpu": "NVIDIA H200", "gpus": 1, "model": "m-1b", "parameters": 1e9, "stage": "reward_model",
         "tokens_per_s": 56000.0, "items_per_s": None},
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def paper():
    return validate_config(merged_config("configs/paper.yaml"), load_schema())


def test_a_measured_size_on_the_measured_class_is_measured_and_others_are_extrapolated():
    rate = stage_rate("sft", 7e9, "H200", ROWS)
    assert rate.per_gpu == 4000 and rate.basis == "measured: m-7b sft on NVIDIA H200 (d)"
    # The nearest size is the base; compute scales with the parameters and the class's peak.
    near_1b = stage_rate("sft", 2e9, "H200", ROWS)
    assert near_1b.per_gpu == pytest.approx(20000 / 2) and near_1b.basis.startswith("extrapolated from m-1b")
    a100 = stage_rate("sft", 7e9, "A100", ROWS)
    assert a100.per_gpu == pytest.approx(4000 * 312 / 989) and a100.basis.startswith("extrapolated from m-7b")
    assert stage_rate("dpo", 7e9, "H200", ROWS) is None


def test_a_runtime_is_the_work_over_the_rate_times_the_margin_plus_setup():
    minutes, basis = runtime("sft", 7e9, work=4000 * 3600, gpus=1, site=H200, measurements=ROWS)
    assert minutes == math.ceil(MARGIN * 60 + 5 + 1.5 * 7) and basis.startswith("measured")
    two, _ = runtime("sft", 7e9, work=4000 * 3600, gpus=2, site=H200, measurements=ROWS)
    assert two == math.ceil(MARGIN * 60 / (2 * SCALING_EFFICIENCY) + 5 + 1.5 * 7)
    # Stages with no measurement keep an assumed time, and say so.
    assert runtime("translate_shard", 3.3e9, work=1, gpus=1, site=H200, measurements=ROWS) == (
        math.ceil(MARGIN * 60 + 5 + 1.5 * 3.3),
        "assumed",
    )
    # Nothing asks for less than half an hour.
    assert runtime("sft", 1e9, work=1000, gpus=1, site=H200, measurements=ROWS)[0] == 30


def test_the_paper_work_is_the_data_the_recipe_trains_on(paper):
    # 52K Alpaca records, 10% held out, 3 epochs of at most 512 tokens.
    assert stage_work("sft", paper) == pytest.approx(52000 * 0.9 * 3 * 512)
    # 42K rankings of 4 responses: 6 pairs each, 10% held out, 3 epochs, both sequences of 768.
    assert stage_work("reward_model", paper) == pytest.approx(42000 * 6 * 0.9 * 3 * 2 * 768)
    # PPO: 5 rounds of 896 rollouts of a 256-token prompt and 256-token response.
    assert stage_work("ppo", paper) == 5 * 896 * 512
    assert stage_work("generate_responses", paper) == 2000 * 4 * 256  # a ranking shard's prompts
    released = {**paper, "split": {**paper["split"], "rm": {**paper["split"]["rm"], "source": "okapi_release"}}}
    assert stage_work("reward_model", released) == pytest.approx(42000 * 0.9 * 3 * 2 * 768)  # pairs as released


def test_a_job_longer_than_the_site_allows_asks_for_more_gpus(paper):
    measurements = read_measurements(REPO / "reference" / "gpu_measurements.csv")
    roomy = gpu_job("reward_model", 6.74e9, {**paper, "site": H200}, measurements)
    short = gpu_job("reward_model", 6.74e9, {**paper, "site": {**H200, "max_job_hours": 12}}, measurements)
    assert roomy["gpu"] == 1 and roomy["runtime"] <= 48 * 60
    assert short["gpu"] > 1 and short["runtime"] <= 12 * 60 and 64 % short["gpu"] == 0
    assert short["basis"].startswith("extrapolated from llama-1b reward_model")
    # 7B SFT on 80 GB cards: sharded over two.
    assert gpu_job("sft", 6.74e9, paper, measurements)["gpu"] == 2


TINY = {"architecture": "llama", "hidden_size": 64, "intermediate_size": 128, "num_layers": 4, "num_heads": 4}


def test_a_built_model_is_sized_from_its_build():
    # Embeddings and head 2 x 2000 x 64; 4 layers of attention 4 x 64^2 and feed-forward 3 x 64 x 128.
    assert built_model_parameters(TINY, vocab_size=2000) == 2 * 2000 * 64 + 4 * (4 * 64**2 + 3 * 64 * 128)
    # A translation model has an encoder and a decoder; no intermediate_size: 4 x the width.
    nllb = {**TINY, "architecture": "nllb", "intermediate_size": None}
    assert built_model_parameters(nllb, vocab_size=2000) == 2 * 2000 * 64 + 2 * 4 * (4 * 64**2 + 3 * 64 * 256)


def test_a_model_is_sized_by_its_count_its_build_or_the_model_it_is_compared_with(paper):
    config = {
        **paper,
        "base_models": {**paper["base_models"], "tiny": {"build": TINY, "parameters": None}},
        "tiny_models": {**paper["tiny_models"], "vocab_size": 2000},
        "evaluation": {
            **paper["evaluation"],
            "released_models": {
                "okapi-7b": {"parameters": None, "compare_with": {"model": "llama-7b", "variant": "ppo"}},
                "other": {"parameters": 1.3e9},
            },
        },
    }
    assert model_parameters("llama-7b", config) == 6.74e9
    assert model_parameters("tiny", config) == built_model_parameters(TINY, 2000)
    assert model_parameters("okapi-7b", config) == 6.74e9 and model_parameters("other", config) == 1.3e9
    assert model_parameters("facebook/nllb-200-3.3B", config) == UNKNOWN_MODEL_PARAMETERS == 7e9


def test_a_joint_job_has_every_languages_work_on_the_most_gpus_its_batches_divide_by(paper):
    measurements = read_measurements(REPO / "reference" / "gpu_measurements.csv")
    assert model_gpu_job("ppo", "llama-7b", paper, measurements) == gpu_job("ppo", 6.74e9, paper, measurements)
    joint = model_gpu_job("ppo", "llama-7b", paper, measurements, joint=True)
    # PPO's batches of 896 and 7 divide by 7 GPUs (training.joint_gpus: 8 at most); 26 languages' rounds.
    assert joint == gpu_job("ppo", 6.74e9, paper, measurements, languages=26, least_gpus=7)
    assert joint["gpu"] == 7 and joint["runtime"] > model_gpu_job("ppo", "llama-7b", paper, measurements)["runtime"]


def test_every_measured_row_is_complete():
    table = read_measurements(REPO / "reference" / "gpu_measurements.csv")
    assert list(table.columns) == [
        "date", "gpu", "gpu_memory_gb", "gpus", "model", "parameters", "stage", "tokens_per_s",
        "items_per_s", "step_time_s", "peak_gb", "mfu", "precision", "note",
    ]  # fmt: skip
    assert (table["tokens_per_s"].notna() | table["items_per_s"].notna()).all()
    assert table["parameters"].gt(0).all() and table["date"].notna().all()


def test_an_unknown_gpu_class_is_a_one_line_config_error():
    config = merged_config()
    config["site"] = {"gpu": "Voodoo5"}
    with pytest.raises(ConfigError, match=r"^config: 'site.gpu': 'Voodoo5' is not a GPU class the runtimes know \("):
        validate_config(config, load_schema())


def gpu_report(gpus: int) -> dict:
    """A tools/gpu_check.py report of the shape it writes: setup facts, a build, stages."""
    return {
        "started": "2027-01-05T10:00:00",
        "device": {"gpus": gpus, "names": ["NVIDIA H100 80GB HBM3"] * gpus, "memory_gb": [79.6] * gpus},
        "stages": [
            {"model": "-", "stage": "setup", "status": "ok"},
            {"model": "llama-7b", "stage": "build", "status": "ok", "parameters": 6738415616},
            {"model": "llama-7b", "stage": "sft", "status": "ok", "parameters": 6738415616, "tokens_per_s": 9000.0,
             "step_time_s": 0.9, "peak_memory_gb": 70.2, "mfu": 0.41, "compute_dtype": "bfloat16", "note": ""},
            {"model": "llama-7b", "stage": "ppo", "status": "failed", "tokens_per_s": 1.0},
            {"model": "llama-7b", "stage": "evaluate_hf", "status": "ok", "items_per_s": 12.5,
             "compute_dtype": "bfloat16"},
        ],
    }  # fmt: skip


def test_a_gpu_checks_rates_join_the_table_and_become_the_runtimes_basis(tmp_path):
    table = tmp_path / "gpu_measurements.csv"
    table.write_text((REPO / "reference" / "gpu_measurements.csv").read_text())
    assert append_measurements(table, measurement_rows(gpu_report(gpus=0))) == 0  # a CPU run measures nothing
    assert append_measurements(table, measurement_rows(gpu_report(gpus=1))) == 2  # the failed PPO is left out
    rows = read_measurements(table).tail(2)
    assert list(rows["stage"]) == ["sft", "evaluate_hf"] and list(rows["gpu"]) == ["NVIDIA H100 80GB HBM3"] * 2
    assert rows.iloc[0]["tokens_per_s"] == 9000 and rows.iloc[1]["items_per_s"] == 12.5
    # An H100 site now finds its own measurement for a 7B model.
    rate = stage_rate("sft", 6.74e9, "H100", read_measurements(table))
    assert rate.basis == "measured: llama-7b sft on NVIDIA H100 80GB HBM3 (2027-01-05)"
