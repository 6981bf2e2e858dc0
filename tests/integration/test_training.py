"""SFT, reward model, PPO and DPO on the tiny models: they learn, freeze what they should,
save loadable models, and resume after a kill."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.training.dpo import train_dpo
from okapi_pipeline.training.launch import launch_command
from okapi_pipeline.training.modeling import Precision
from okapi_pipeline.training.ppo import train_ppo
from okapi_pipeline.training.reward_model import train_reward_model
from okapi_pipeline.training.sft import train_sft
from tests.support.training import (
    DPO_SETTINGS,
    EMBEDDINGS,
    PPO_SETTINGS,
    REWARD_MODEL_SETTINGS,
    SFT_SETTINGS,
    SUMMARY_FIELDS,
    changed_blocks,
    instruction_records,
    marker_pairs,
    state,
    summary,
)

BACKBONE = {"llama": "model.", "bloom": "transformer."}


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    write_jsonl(path, instruction_records(40))
    return path


@pytest.fixture(scope="module", params=["llama", "bloom"])
def sft_model(request, tmp_path_factory, sft_data):
    """(architecture, base dir, SFT dir) for each tiny architecture."""
    base = request.getfixturevalue(f"tiny_{request.param}_dir")
    root = tmp_path_factory.mktemp(f"sft-{request.param}")
    train_sft(base, sft_data, root / "sft", SFT_SETTINGS, root / "checkpoints", threads=1)
    return request.param, base, root / "sft"


# ---- SFT --------------------------------------------------------------------------------


def test_sft_lowers_the_loss_and_saves_a_plain_model(sft_model):
    _, base, sft = sft_model
    result = summary(sft)
    assert SUMMARY_FIELDS <= set(result)
    losses = [point["loss"] for point in result["loss"]]
    assert result["steps"] == len(losses) == 15  # 36 train records / batch 8 = 5 steps x 3 epochs
    assert losses[-1] < losses[0] - 0.5
    assert result["eval_loss"][-1]["eval_loss"] < result["eval_loss"][0]["eval_loss"]
    assert result["train_examples"] == 36 and result["held_out_examples"] == 4
    assert result["trainable_parameters"] == result["total_parameters"]  # full fine-tuning
    tuned = state(sft)
    assert any(not torch.equal(value, tuned[name]) for name, value in state(base).items())
    assert not (sft.parent / "checkpoints").exists()  # no stale checkpoint is left for a rerun


def test_sft_with_lora_saves_a_merged_plain_model(tmp_path, tiny_llama_dir, sft_data):
    settings = {**SFT_SETTINGS, "finetuning": "lora", "epochs": 1}
    train_sft(tiny_llama_dir, sft_data, tmp_path / "sft", settings, tmp_path / "checkpoints", threads=1)
    assert not list((tmp_path / "sft").glob("adapter_*"))
    merged = state(tmp_path / "sft")
    assert set(merged) == set(state(tiny_llama_dir))
    assert summary(tmp_path / "sft")["trainable_parameters"] < summary(tmp_path / "sft")["total_parameters"]


# ---- reward model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_model(sft_model, tmp_path_factory):
    architecture, _, sft = sft_model
    root = tmp_path_factory.mktemp(f"rm-{architecture}")
    write_jsonl(root / "pairs.jsonl", marker_pairs(16))
    train_reward_model(sft, root / "pairs.jsonl", root / "rm", REWARD_MODEL_SETTINGS, root / "checkpoints", threads=1)
    return architecture, sft, root / "rm"


def test_reward_model_learns_a_separable_preference(reward_model):
    _, _, reward_model_dir = reward_model
    result = summary(reward_model_dir)
    assert SUMMARY_FIELDS <= set(result)
    assert result["held_out_pairs"] == 12  # 4 of 16 prompts, 3 pairs each
    assert result["held_out_accuracy"] > 0.9
    assert result["loss"][-1]["loss"] < result["loss"][0]["loss"]


def test_reward_model_trains_embeddings_and_top_blocks_while_lower_blocks_stay_identical(reward_model):
    architecture, sft, reward_model_dir = reward_model
    prefix = BACKBONE[architecture]
    before, after = state(sft), state(reward_model_dir, AutoModelForSequenceClassification, num_labels=1)
    changed = changed_blocks(before, after, prefix)
    blocks = "layers" if architecture == "llama" else "h"
    assert {name.split(".")[1] for name in changed if name.startswith(blocks + ".")} == {"2", "3"}
    assert all(name.startswith((blocks + ".2.", blocks + ".3.", "norm.", "ln_f.", *EMBEDDINGS)) for name in changed)
    # As in the original (layers[:-12] frozen, nothing else): the embeddings train too.
    assert any(name.startswith(EMBEDDINGS) for name in changed)
    assert "score.weight" in after
    config = AutoModelForSequenceClassification.from_pretrained(reward_model_dir, num_labels=1).config
    assert config.pad_token_id is not None


# ---- PPO ------------------------------------------------------------------------------------


def test_ppo_trains_the_top_blocks_and_saves_a_causal_lm(reward_model, sft_data, tmp_path):
    architecture, sft, reward_model_dir = reward_model
    train_ppo(sft, reward_model_dir, sft_data, tmp_path / "ppo", PPO_SETTINGS, tmp_path / "checkpoints", threads=1)
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")
    assert policy.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=3).shape[1] >= 4
    prefix = BACKBONE[architecture]
    changed = changed_blocks(state(sft), policy.state_dict(), prefix)
    blocks = "layers" if architecture == "llama" else "h"
    # Blocks below the top one stay identical; the embeddings train (trlx of mid-2023).
    assert changed and not [n for n in changed if not n.startswith((blocks + ".3.", "norm.", "ln_f.", *EMBEDDINGS))]
    result = summary(tmp_path / "ppo")
    assert SUMMARY_FIELDS | {"reward", "kl", "episodes"} <= set(result)
    assert result["steps"] == 2 and result["episodes"] == 16  # 2 rounds of 8 rollouts
    # 2 rounds x 2 PPO epochs x 8 / 4 minibatches
    assert result["schedule"]["optimizer_steps"] == 8 and result["schedule"]["prompts"] == 16
    assert [point["step"] for point in result["reward"]] == [1, 2]
    assert abs(result["kl"][0]["value"]) < 1e-3  # the first rollout comes from the reference policy itself
    # Adaptive KL: a KL far below the target of 6 shrinks the coefficient by the largest
    # step, 20% x 8 episodes / horizon 8, before the second batch.
    assert [point["value"] for point in result["kl_coef"]] == [0.1, pytest.approx(0.08)]
    assert all(abs(point["value"]) <= 0.01 for point in result["reward"])  # clipped (unclipped: about 0.1)
    assert result["resumed_from_step"] == 0
    assert not (tmp_path / "checkpoints").exists()


def _whiten_on_two_processes(rank, init_file, results):
    import torch.distributed as dist

    from okapi_pipeline.training.ppo import whiten_in_groups

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)
    values, mask = torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool)
    results[rank] = (values, whiten_in_groups(values, mask, group_size=1, all_reduce=dist.all_reduce))
    dist.destroy_process_group()


def test_minibatch_whitening_spans_the_processes(tmp_path):
    """With 2 processes and minibatches of 1 per process, group g is rollout g of both, as in trlx."""
    import torch.multiprocessing as mp

    from okapi_pipeline.training.ppo import whiten_in_groups

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_whiten_on_two_processes, args=(str(tmp_path / "init"), results), nprocs=2)
        (values0, out0), (values1, out1) = results[0], results[1]
    # On one process: rollout 0 of both processes, then rollout 1 of both, in groups of 2.
    together = torch.stack([values0[0], values1[0], values0[1], values1[1]])
    expected = whiten_in_groups(together, torch.ones(4, 3, dtype=torch.bool), group_size=2)
    assert torch.allclose(torch.stack([out0[0], out1[0], out0[1], out1[1]]), expected, atol=1e-6)


def test_ppo_whitens_advantages_per_minibatch_when_asked(reward_model, sft_data, tmp_path, monkeypatch):
    """A real trl PPO run: every round's advantages go through the minibatch-scope whitening."""
    import okapi_pipeline.training.ppo as ppo

    groups = []
    real = ppo.whiten_in_groups

    def spy(values, mask, group_size, all_reduce=None):
        groups.append((tuple(values.shape), group_size))
        return real(values, mask, group_size, all_reduce)

    monkeypatch.setattr(ppo, "whiten_in_groups", spy)
    _, sft, reward_model_dir = reward_model
    settings = {**PPO_SETTINGS, "advantage_whitening": "minibatch"}
    train_ppo(sft, reward_model_dir, sft_data, tmp_path / "ppo", settings, tmp_path / "ck", threads=1)
    # 2 rounds of 8 rollouts, whitened in groups of the minibatch's 4.
    assert [(shape[0], size) for shape, size in groups] == [(8, 4), (8, 4)]
    from trl.experimental.ppo import ppo_trainer

    assert ppo_trainer.masked_whiten.__module__ == "trl.experimental.ppo.ppo_trainer"  # restored


# ---- DPO --------------------------------------------------------------------------------------


def test_dpo_prefers_the_chosen_responses_and_trains_only_the_top_blocks(tmp_path, tiny_llama_dir):
    write_jsonl(tmp_path / "pairs.jsonl", marker_pairs(16))
    train_dpo(
        tiny_llama_dir, tmp_path / "pairs.jsonl", tmp_path / "dpo", DPO_SETTINGS, tmp_path / "checkpoints", threads=1
    )
    result = summary(tmp_path / "dpo")
    assert SUMMARY_FIELDS | {"reward_accuracy", "held_out_reward_accuracy"} <= set(result)
    assert result["stage"] == "dpo" and result["held_out_pairs"] == 12
    assert result["loss"][-1]["loss"] < result["loss"][0]["loss"]
    assert result["held_out_reward_accuracy"][-1]["value"] > 0.9
    changed = changed_blocks(state(tiny_llama_dir), state(tmp_path / "dpo"), "model.")
    assert changed and all(name.startswith(("layers.2.", "layers.3.", "norm.")) for name in changed)
    assert (tmp_path / "dpo" / "tokenizer.json").exists()


# ---- kill and resume -----------------------------------------------------------------------


def kill_after_checkpoint(stage: str, arguments: dict, checkpoint: int, timeout: float = 120) -> None:
    """Run a stage through the CLI and SIGKILL it once checkpoint-N is complete."""
    args_json = Path(arguments["out_dir"]).parent / f"{stage}-arguments.json"
    args_json.write_text(json.dumps(arguments, default=str))
    process = subprocess.Popen(
        launch_command(stage, args_json, arguments["settings"], 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    done = Path(arguments["checkpoint_dir"]) / f"checkpoint-{checkpoint}" / "trainer_state.json"
    deadline = time.time() + timeout
    while not done.exists():
        assert process.poll() is None, "the run ended before it was killed"
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not Path(arguments["out_dir"]).exists()


def same_format(resumed, uninterrupted) -> None:
    """The same files, and tensors of the same names and shapes."""
    assert sorted(p.name for p in Path(resumed).iterdir()) == sorted(p.name for p in Path(uninterrupted).iterdir())
    shapes = lambda d: {k: v.shape for k, v in state(d).items()}  # noqa: E731
    assert shapes(resumed) == shapes(uninterrupted)
    assert set(summary(Path(resumed))) == set(summary(Path(uninterrupted)))


def test_sft_killed_resumes_from_its_last_checkpoint(tmp_path, tiny_llama_dir, sft_data):
    settings = {**SFT_SETTINGS, "epochs": 8, "save_steps": 2}  # 40 steps
    arguments = dict(
        base_dir=str(tiny_llama_dir),
        data_path=str(sft_data),
        out_dir=str(tmp_path / "sft"),
        settings=settings,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        threads=1,
    )
    kill_after_checkpoint("sft", arguments, checkpoint=4)
    result = train_sft(**arguments)
    assert result["resumed_from_step"] >= 4
    assert result["steps"] == 40
    assert [point["step"] for point in result["loss"]] == list(range(1, 41))  # the killed run's steps kept
    train_sft(tiny_llama_dir, sft_data, tmp_path / "whole", {**settings, "epochs": 1}, tmp_path / "ck2", threads=1)
    same_format(tmp_path / "sft", tmp_path / "whole")


@pytest.mark.parametrize("sft_model", ["llama"], indirect=True)  # the checkpoints do not depend on it
def test_ppo_killed_resumes_from_its_last_checkpoint(tmp_path, reward_model, sft_data):
    _, sft, reward_model_dir = reward_model
    settings = {**PPO_SETTINGS, "rounds": 12}  # 12 updates, a checkpoint after each
    arguments = dict(
        sft_dir=str(sft),
        reward_model_dir=str(reward_model_dir),
        prompts_path=str(sft_data),
        out_dir=str(tmp_path / "ppo"),
        settings=settings,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        threads=1,
    )
    kill_after_checkpoint("ppo", arguments, checkpoint=3)
    result = train_ppo(**arguments)
    assert result["resumed_from_step"] >= 3
    assert result["steps"] == 12 and result["episodes"] == 96
    assert [point["step"] for point in result["reward"]] == list(range(1, 13))
    # The coefficient carries on from the checkpoint instead of restarting at 0.1.
    coefs = [point["value"] for point in result["kl_coef"]]
    assert coefs[result["resumed_from_step"]] != 0.1
    assert not (tmp_path / "checkpoints").exists()
    train_ppo(sft, reward_model_dir, sft_data, tmp_path / "whole", PPO_SETTINGS, tmp_path / "ck2", threads=1)
    same_format(tmp_path / "ppo", tmp_path / "whole")


def test_ppo_computes_in_bf16_where_the_run_is_bf16_and_keeps_fp32_weights(
    reward_model, sft_data, tmp_path, monkeypatch
):
    # The precision a bf16 GPU gets, on the CPU (whose autocast computes bf16 too).
    import okapi_pipeline.training.trainer

    monkeypatch.setattr(okapi_pipeline.training.trainer, "run_precision", lambda threads=None: Precision("cpu", True))
    seen = {True: set(), False: set()}

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            seen[torch.is_grad_enabled()].add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        _, sft, reward_model_dir = reward_model
        settings = {**PPO_SETTINGS, "rounds": 1}
        result = train_ppo(
            sft, reward_model_dir, sft_data, tmp_path / "ppo", settings, tmp_path / "checkpoints", threads=1
        )
    finally:
        hook.remove()
    # Rollouts, reference, reward and value forwards (no grad), and the training forward.
    assert seen[False] == {torch.bfloat16} and seen[True] == {torch.bfloat16}
    assert result["bf16"] and result["steps"] == 1
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
