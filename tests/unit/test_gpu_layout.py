"""The GPU layout: GPUs per job from the site's cards, micro-batches and checkpointing from memory."""

import pytest

from okapi_pipeline.cluster.gpu_layout import GB, Shape, batch_layout, gpus_for, peak_bytes, smallest_fit
from okapi_pipeline.config import load_schema, validate_config
from tests.support.workflow import merged_config

LLAMA_7B = Shape(6.74e9, 4096, 32, 32000)


LLAMA_1B = Shape(1.06e9, 2048, 18, 32000)  # tools/gpu_check.py's llama-1b


@pytest.fixture(scope="module")
def paper():
    return validate_config(merged_config("configs/paper.yaml"), load_schema())


@pytest.mark.parametrize(
    "memory_gb, parameters, expected",
    [
        # 1B fits one card of either size in every stage.
        (80, 1.1e9, {"sft": 1, "reward_model": 1, "dpo": 1, "ppo": 1}),
        (141, 1.1e9, {"sft": 1, "reward_model": 1, "dpo": 1, "ppo": 1}),
        # 7B: full fine-tuning holds 18 B a parameter (121 GB), so SFT shards over 2 cards of
        # 80 GB; PPO's four models need ZeRO-2 over the processes its batches divide by.
        (80, 6.74e9, {"sft": 2, "reward_model": 1, "dpo": 1, "ppo": 2}),
        (141, 6.74e9, {"sft": 1, "reward_model": 1, "dpo": 1, "ppo": 1}),
        # 8B (Llama-3.1): 145 GB of SFT state no longer fits one 141 GB card.
        (80, 8.03e9, {"sft": 2, "reward_model": 1, "dpo": 1, "ppo": 7}),
        (141, 8.03e9, {"sft": 2, "reward_model": 1, "dpo": 1, "ppo": 2}),
    ],
)
def test_the_planner_lays_out_1b_7b_and_8b_on_80_and_141_gb_cards(paper, memory_gb, parameters, expected):
    site = {"gpu_memory_gb": memory_gb, "gpus_per_node": 8}
    settings = {**paper["ppo"], "mini_batch_size": 14}  # the minibatch these counts divide
    stages = {stage: paper[stage] for stage in ("sft", "reward_model", "dpo")} | {"ppo": settings}
    assert {stage: gpus_for(stage, parameters, stages[stage], site) for stage in stages} == expected
    for stage, gpus in expected.items():
        _, per_gpu = smallest_fit(stage, Shape.from_parameters(parameters), stages[stage], memory_gb, 8)
        assert per_gpu <= 0.9 * memory_gb


def test_ppo_asks_only_for_process_counts_its_batches_divide_by(paper):
    # 896 rollouts and minibatches of 7: 1 or 7 processes; a 7B PPO needs more than 1 card of 80 GB.
    settings = {**paper["ppo"], "rollout_batch_size": 896, "mini_batch_size": 7}
    assert gpus_for("ppo", 6.74e9, settings, {"gpu_memory_gb": 80, "gpus_per_node": 8}) == 7


def test_the_model_meets_the_measured_sft_peaks(paper):
    # reference/gpu_measurements.csv: micro-batches of 2 x 512 tokens with checkpointing, one H200.
    settings = {**paper["sft"], "max_length": 512}
    assert peak_bytes("sft", LLAMA_7B, settings, 1, 2, True) / GB == pytest.approx(113, rel=0.05)
    assert peak_bytes("sft", LLAMA_1B, settings, 1, 2, True) / GB == pytest.approx(17.8, rel=0.15)


def test_auto_keeps_the_effective_batch_and_checkpoints_only_where_needed(paper):
    settings = {**paper["sft"], "per_device_batch_size": "auto", "gradient_checkpointing": "auto"}
    # 141 GB: the whole model on one card, micro-batches of 4 without checkpointing.
    big = batch_layout("sft", LLAMA_7B, settings, 1, 141 * GB)
    assert (big.micro_batch, big.accumulation, big.checkpointing) == (4, 4, False)
    # 2 x 80 GB under FSDP: each process holds half the state and 8 of the 16 examples.
    sharded = batch_layout("sft", LLAMA_7B, settings, 2, 80 * GB)
    assert sharded.micro_batch * sharded.accumulation * 2 == 16 and not sharded.checkpointing
    # One 80 GB card cannot hold 7B SFT at all: the smallest layout, flagged by its estimate.
    cramped = batch_layout("sft", LLAMA_7B, settings, 1, 80 * GB)
    assert (cramped.micro_batch, cramped.checkpointing) == (1, True) and cramped.memory_gb > 80
    # A 1B model's activations fit without checkpointing even at micro-batch 16.
    small = batch_layout("sft", LLAMA_1B, settings, 1, 80 * GB)
    assert (small.micro_batch, small.accumulation, small.checkpointing) == (16, 1, False)
    # What is set is kept.
    fixed = batch_layout("sft", LLAMA_7B, {**settings, "per_device_batch_size": 2}, 8, 80 * GB)
    assert (fixed.micro_batch, fixed.accumulation) == (2, 1)
    with pytest.raises(ValueError, match="not a multiple of 3 per device x 1 devices"):
        batch_layout("sft", LLAMA_7B, {**settings, "per_device_batch_size": 3}, 1, 80 * GB)
    with pytest.raises(ValueError, match="does not divide by 3 processes"):
        batch_layout("sft", LLAMA_7B, settings, 3, 80 * GB)
