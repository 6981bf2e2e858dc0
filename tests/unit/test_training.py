"""The training stages' parts without training: advantage whitening, the KL controller, reward
clipping, freezing, the launcher, checkpoints, the one trainer sequence, the paper's schedule."""

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from okapi_pipeline.training.launch import CONFIG_DIR, launch_command
from okapi_pipeline.training.modeling import freeze_lower_blocks, load_scorer, load_tokenizer, transformer_blocks
from okapi_pipeline.training.ppo import ClippedScore, adaptive_kl_coef, ppo_schedule
from okapi_pipeline.training.trainer import fingerprint, prepare_checkpoints
from tests.support.training import DPO_SETTINGS, PPO_SETTINGS, REWARD_MODEL_SETTINGS, SFT_SETTINGS, summary
from tests.support.workflow import REPO


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

    repo = REPO
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
