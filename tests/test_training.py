"""SFT, reward model and PPO on the tiny models: they learn, freeze what they should, save loadable models."""

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.training.dpo import train_dpo
from okapi_pipeline.training.launch import CONFIG_DIR, launch_command
from okapi_pipeline.training.modeling import (
    Precision,
    freeze_lower_blocks,
    load_scorer,
    load_tokenizer,
    transformer_blocks,
)
from okapi_pipeline.training.ppo import ClippedScore, adaptive_kl_coef, ppo_schedule, train_ppo
from okapi_pipeline.training.reward_model import train_reward_model
from okapi_pipeline.training.sft import train_sft
from okapi_pipeline.training.trainer import fingerprint, prepare_checkpoints

SFT_SETTINGS = {
    "report_to": "none",
    "finetuning": "full",
    "epochs": 3,
    "learning_rate": 3e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "adam_betas": [0.9, 0.95],
    "weight_decay": 0.05,
    "max_length": 96,
    "per_device_batch_size": 4,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "held_out_fraction": 0.1,
    "completion_only_loss": False,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}
REWARD_MODEL_SETTINGS = {
    "report_to": "none",
    "epochs": 3,
    "learning_rate": 1e-2,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "weight_decay": 1e-4,
    "max_length": 96,
    "per_device_batch_size": 8,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "trainable_top_blocks": 2,
    "freeze_embeddings": False,
    "held_out_fraction": 0.25,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}
PPO_SETTINGS = {
    "report_to": "none",
    "rounds": 2,
    "num_ppo_epochs": 2,
    "rollout_batch_size": 8,
    "mini_batch_size": 4,
    "advantage_whitening": "round",
    "chunk_size": 4,
    "learning_rate": 1e-3,
    "weight_decay": 1e-6,
    "adam_betas": [0.9, 0.95],
    "max_grad_norm": 1.0,
    "kl_coef": 0.1,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 1.0,
    "gamma": 1.0,
    "lam": 0.95,
    "max_prompt_length": 64,
    "response_length": 8,
    "temperature": 1.0,
    "trainable_top_blocks": 1,
    "freeze_embeddings": False,
    "seed": 0,
    # A short horizon, so that the adaptive coefficient visibly moves in two updates.
    "kl_control": "adaptive",
    "kl_target": 6.0,
    "kl_horizon": 8,
    "kl_episodes_per_round": None,
    "reward_clip": 0.01,
    "save_steps": 1,
    "kernels": "auto",
}
DPO_SETTINGS = {
    "report_to": "none",
    "beta": 0.1,
    "epochs": 2,
    "learning_rate": 1e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": 1,
    "weight_decay": 0.0,
    "max_length": 96,
    "per_device_batch_size": 8,
    "gradient_checkpointing": False,
    "effective_batch_size": 8,
    "trainable_top_blocks": 2,
    "freeze_embeddings": True,
    "held_out_fraction": 0.25,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}
# The input embeddings (and BLOOM's layer norm on them), relative to the backbone.
EMBEDDINGS = ("embed_tokens.", "word_embeddings.", "word_embeddings_layernorm.")
SUMMARY_FIELDS = {"stage", "steps", "loss", "wall_time_s", "trainable_parameters", "total_parameters", "settings"}

QA = [
    ("Con mèo ngồi ở đâu?", "", "Con mèo ngồi trên tấm thảm."),
    ("Thủ đô của Pháp là gì?", "", "Thủ đô của Pháp là Paris."),
    ("Kucing duduk di mana?", "Kucing", "Kucing duduk di atas tikar."),
    ("Apa ibu kota Prancis?", "", "Ibu kota Prancis adalah Paris."),
]


def instruction_records(n: int) -> list[dict]:
    return [
        {"id": f"alpaca-{i:05d}", "instruction": QA[i % 4][0], "input": QA[i % 4][1], "output": QA[i % 4][2]}
        for i in range(n)
    ]


def marker_pairs(prompts: int, per_prompt: int = 3) -> list[dict]:
    """A clearly separable preference: every chosen response ends with the word 'Paris'."""
    rng = random.Random(0)
    words = "con mèo chó nước biển thủ đô kucing anjing air laut tikar".split()

    def sentence():
        return " ".join(rng.choice(words) for _ in range(5))

    return [
        {
            "id": f"rm-{i:05d}",
            "instruction": f"Viết câu số {i}.",
            "input": "",
            "prefered_output": sentence() + " Paris",
            "rejected_output": sentence(),
        }
        for i in range(prompts)
        for _ in range(per_prompt)
    ]


def state(directory, cls=AutoModelForCausalLM, **kwargs) -> dict:
    return cls.from_pretrained(directory, **kwargs).state_dict()


def summary(directory) -> dict:
    return json.loads((directory / "training_summary.json").read_text())


def changed_blocks(before: dict, after: dict, prefix: str) -> set[str]:
    """Names (relative to the backbone prefix) of the parameters that differ."""
    return {
        name[len(prefix) :]
        for name, value in before.items()
        if name.startswith(prefix) and not torch.equal(value, after[prefix + name[len(prefix) :]])
    }


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


def test_minibatch_whitening_normalises_each_group_of_rollouts_as_trlx_did():
    """trlx whitened a minibatch's advantages over all its tokens: (x - mean) / sqrt(var + 1e-8)."""
    from okapi_pipeline.training.ppo import whiten_in_groups

    values = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0], [10.0, 30.0, 50.0], [20.0, 40.0, 60.0]])
    mask = torch.tensor([[True, True, False], [True, True, False], [True, True, True], [True, True, True]])
    whitened = whiten_in_groups(values, mask, group_size=2)
    for group, rows in enumerate(((0, 1), (2, 3))):
        kept = values[list(rows)][mask[list(rows)]]
        mean, variance = kept.mean(), kept.var(unbiased=False)
        expected = (values[list(rows)] - mean) / torch.sqrt(variance + 1e-8)
        got = whitened[list(rows)]
        assert torch.allclose(got[mask[list(rows)]], expected[mask[list(rows)]]), group
        assert abs(got[mask[list(rows)]].mean()) < 1e-6
    # Masked tokens (padding) take no part in the statistics.
    assert torch.equal(whiten_in_groups(values.masked_fill(~mask, -99.0), mask, 2)[mask], whitened[mask])
    # One group of all rollouts is trl's whitening over the round, less Bessel's correction.
    from trl.experimental.ppo.ppo_trainer import masked_whiten

    round_scope = masked_whiten(values, mask)
    assert torch.allclose(whiten_in_groups(values, mask, 4)[mask], round_scope[mask] * (10 / 9) ** 0.5, atol=1e-5)


def _whiten_on_two_processes(rank, init_file, results):
    import torch.distributed as dist

    from okapi_pipeline.training.ppo import whiten_in_groups

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)
    values, mask = torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool)
    results[rank] = (values, whiten_in_groups(values, mask, group_size=1, all_reduce=dist.all_reduce))
    dist.destroy_process_group()


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_adaptive_kl_follows_the_original_controller():
    # Ziegler et al.: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon
    assert adaptive_kl_coef(0.1, kl=9.0, target=6.0, horizon=10000, episodes=128) == pytest.approx(
        0.1 * (1 + 0.2 * 128 / 10000)
    )
    assert adaptive_kl_coef(0.1, kl=6.6, target=6.0, horizon=10000, episodes=128) == pytest.approx(
        0.1 * (1 + 0.1 * 128 / 10000)
    )
    assert adaptive_kl_coef(0.1, kl=0.0, target=6.0, horizon=10000, episodes=128) == pytest.approx(
        0.1 * (1 - 0.2 * 128 / 10000)
    )
    assert adaptive_kl_coef(0.1, kl=6.0, target=6.0, horizon=10000, episodes=128) == 0.1
    # Held far above the target, the coefficient grows by 0.256% per batch of 128.
    coef = 0.1
    for _ in range(10):
        coef = adaptive_kl_coef(coef, kl=20.0, target=6.0, horizon=10000, episodes=128)
    assert coef == pytest.approx(0.1 * 1.00256**10)


def test_reward_clip_bounds_the_scores_ppo_reads(tiny_llama_dir):
    from trl.experimental.utils import get_reward

    scorer = load_scorer(tiny_llama_dir, load_tokenizer(tiny_llama_dir), seed=0, dtype=torch.float32)
    with torch.no_grad():
        scorer.score.weight.mul_(1000)  # scores far outside the bound
        ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
        raw = get_reward(scorer, ids, pad_token_id=0, context_length=2)[1]
        scorer.score = ClippedScore(scorer.score, 10.0)
        clipped = get_reward(scorer, ids, pad_token_id=0, context_length=2)[1]
    assert raw.abs().max() > 10
    assert torch.equal(clipped, raw.clamp(-10, 10))


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


# ---- running anywhere: the launcher --------------------------------------------------------


def test_one_device_runs_in_process_and_several_launch_through_accelerate(tmp_path):
    single = launch_command("sft", tmp_path / "a.json", SFT_SETTINGS, processes=1)
    assert single[1:] == ["-m", "okapi_pipeline.training.launch", "sft", "--args-json", str(tmp_path / "a.json")]
    eight = launch_command("sft", tmp_path / "a.json", SFT_SETTINGS, processes=8)
    assert eight[1:3] == ["-m", "accelerate.commands.launch"]
    assert eight[eight.index("--num_processes") + 1] == "8"
    assert eight[eight.index("--config_file") + 1].endswith("accelerate/fsdp.yaml")
    assert eight[-5:] == single[1:]  # the same stage command, once per process
    config = lambda stage, settings: Path(launch_command(stage, "a.json", settings, 8)[4]).name  # noqa: E731
    assert config("reward_model", REWARD_MODEL_SETTINGS) == "fsdp.yaml"
    assert config("sft", {**SFT_SETTINGS, "finetuning": "lora"}) == "ddp.yaml"
    assert config("dpo", DPO_SETTINGS) == "fsdp.yaml"  # trl shards DPO's frozen reference alike
    assert config("ppo", PPO_SETTINGS) == "deepspeed_zero2.yaml"


def test_the_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {
        name: load_config_from_file(str(CONFIG_DIR / f"{name}.yaml")).distributed_type
        for name in ("fsdp", "ddp", "deepspeed_zero2")
    }
    assert {name: str(kind).split(".")[-1] for name, kind in kinds.items()} == {
        "fsdp": "FSDP",
        "ddp": "MULTI_GPU",
        "deepspeed_zero2": "DEEPSPEED",
    }


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


# ---- shared pieces --------------------------------------------------------------------------


def test_freezing_keeps_a_tied_output_layer_frozen(tiny_bloom_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_bloom_dir)
    trainable = freeze_lower_blocks(model, 1, freeze_embeddings=True)
    assert not model.get_input_embeddings().weight.requires_grad  # BLOOM's lm_head is the embedding
    assert trainable == sum(p.numel() for p in transformer_blocks(model)[-1].parameters()) + sum(
        p.numel() for p in model.transformer.ln_f.parameters()
    )
    with pytest.raises(ValueError, match="has 4 blocks"):
        freeze_lower_blocks(model, 5, freeze_embeddings=True)


def test_unknown_architectures_get_a_clear_error():
    class Backbone(torch.nn.Module):
        pass

    class Model(torch.nn.Module):
        base_model = Backbone()

    with pytest.raises(ValueError, match="cannot find the transformer blocks of Model"):
        transformer_blocks(Model())


def test_checkpoints_resume_the_same_run_and_are_dropped_for_another(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("one\n")
    run = fingerprint(data, {"epochs": 3})
    assert prepare_checkpoints(tmp_path / "ck", run) is None
    for step in (9, 10):
        (tmp_path / "ck" / f"checkpoint-{step}").mkdir()
        (tmp_path / "ck" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "ck" / "checkpoint-11").mkdir()  # cut short by a kill: no trainer_state.json yet
    assert prepare_checkpoints(tmp_path / "ck", run).endswith("checkpoint-10")
    data.write_text("two\n")  # new data: the old run's checkpoints must not be resumed
    assert prepare_checkpoints(tmp_path / "ck", fingerprint(data, {"epochs": 3})) is None
    assert not list((tmp_path / "ck").glob("checkpoint-*"))


def test_every_stage_runs_one_sequence_resume_train_save_summary_clean_up(tmp_path):
    from types import SimpleNamespace

    from okapi_pipeline.training.trainer import Stage, run_trainer

    data, settings, calls = tmp_path / "pairs.jsonl", {"seed": 0}, []
    data.write_text("one\n")
    prepare_checkpoints(tmp_path / "ck", fingerprint(data, settings))
    (tmp_path / "ck" / "checkpoint-3").mkdir()
    (tmp_path / "ck" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    trainer = SimpleNamespace(
        model=torch.nn.Linear(2, 1),
        state=SimpleNamespace(global_step=5, log_history=[{"step": 4, "loss/policy_avg": 0.5}, {"step": 5}]),
        train=lambda resume_from_checkpoint: calls.append(("train", Path(resume_from_checkpoint).name)),
        add_callback=lambda callback: calls.append(type(callback).__name__),
        args=SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=2, gradient_checkpointing=True),
    )

    def save(trainer, out_dir, tokenizer):
        calls.append(("save", tokenizer))
        return trainer.model

    def build(precision):
        calls.append(("build", precision.device))
        return Stage(
            trainer,
            "tokenizer",
            2,
            summary=lambda t: calls.append("summary") or {"own": 1},
            save=save,
            loss_key="loss/policy_avg",
        )

    result = run_trainer(
        "ppo",
        build,
        inputs=(data,),
        out_dir=tmp_path / "out",
        settings=settings,
        checkpoint_dir=tmp_path / "ck",
        threads=1,
    )
    assert calls == [
        ("build", result["device"]),
        "ProgressLog",
        ("train", "checkpoint-3"),
        "summary",
        ("save", "tokenizer"),
    ]
    assert result == summary(tmp_path / "out")
    assert (result["stage"], result["steps"], result["resumed_from_step"], result["own"]) == ("ppo", 5, 3, 1)
    assert result["batch_layout"] == {"micro_batch": 4, "accumulation": 2, "checkpointing": True, "processes": 1}
    assert (result["loss"], result["trainable_parameters"], result["total_parameters"]) == (
        [{"step": 4, "loss": 0.5}],
        2,
        3,
    )
    assert not (tmp_path / "ck").exists()


def paper_config() -> dict:
    from okapi_pipeline.config import load_schema, validate_config

    repo = Path(__file__).parent.parent
    config = yaml.safe_load((repo / "config.yaml").read_text())
    for key, value in yaml.safe_load((repo / "configs" / "paper.yaml").read_text()).items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return validate_config(config, load_schema(repo / "schemas" / "config.schema.yaml"))


def test_the_paper_ppo_schedule_is_the_released_one():
    settings = paper_config()["ppo"]
    # trlx with 7 processes: 128 rollouts each, 4 PPO epochs, 5 rounds; under DeepSpeed
    # every micro-step of one rollout per process was an optimizer step of 7 rollouts.
    schedule = ppo_schedule(settings, prompts=64000, devices=7)
    assert schedule == {
        "rounds": 5,
        "rollouts_per_round": 896,
        "prompts": 4480,
        "mini_batch_size": 7,
        "optimizer_steps": 2560,
        "rollouts_per_device": 128,
    }
    assert ppo_schedule(settings, prompts=64000, devices=1)["optimizer_steps"] == 2560
    assert settings["advantage_whitening"] == "minibatch"
    assert (settings["adam_betas"], settings["max_grad_norm"], settings["kl_episodes_per_round"]) == (
        [0.9, 0.95],
        1.0,
        128,
    )
    # The documented alternative: one pass over all the prompts.
    one_pass = ppo_schedule({**settings, "rounds": None}, prompts=64000, devices=7)
    assert (one_pass["rounds"], one_pass["prompts"], one_pass["optimizer_steps"]) == (72, 64512, 72 * 4 * 128)
    with pytest.raises(ValueError, match="must divide by the 8 processes"):
        ppo_schedule(settings, prompts=64000, devices=8)


def test_paper_stages_freeze_as_the_original():
    config = paper_config()
    assert (config["reward_model"]["trainable_top_blocks"], config["reward_model"]["freeze_embeddings"]) == (12, False)
    assert (config["ppo"]["trainable_top_blocks"], config["ppo"]["freeze_embeddings"]) == (5, False)
    assert config["split"]["sft"]["sources"] == ["alpaca"]
    assert config["split"]["rm"]["sources"] == config["split"]["ppo"]["sources"] == ["self_instruct"]
    assert config["evaluation"]["mmlu"]["fewshot_split"] == "dev"


def test_ppo_gradients_are_clipped_before_every_step():
    from okapi_pipeline.training.ppo import clip_gradients_before_each_step

    layer = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    clip_gradients_before_each_step(optimizer, layer.parameters(), max_norm=1.0)
    before = layer.weight.detach().clone()
    (1000 * layer(torch.ones(1, 4))).sum().backward()
    optimizer.step()
    assert torch.linalg.norm(layer.weight.detach() - before).item() == pytest.approx(1.0, rel=1e-4)


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
