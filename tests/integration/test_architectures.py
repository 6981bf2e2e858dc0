"""Today's base models: a tiny Qwen2 (Qwen2.5-7B's architecture) trained through every stage,
and SFT labels that keep the final eos whatever the pad."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from okapi_pipeline.evaluation.evaluate import evaluate_model
from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.training import sft
from okapi_pipeline.training.dpo import train_dpo
from okapi_pipeline.training.modeling import load_tokenizer, run_precision
from okapi_pipeline.training.ppo import train_ppo
from okapi_pipeline.training.reward_model import train_reward_model
from okapi_pipeline.training.sft import prompt_completion, train_sft
from tests.support.benchmarks import PROTOCOL, prepare_all
from tests.support.training import (
    DPO_SETTINGS,
    PPO_SETTINGS,
    REWARD_MODEL_SETTINGS,
    SFT_SETTINGS,
    changed_blocks,
    instruction_records,
    marker_pairs,
    state,
    summary,
)


def losses(result: dict) -> list[float]:
    return [point["loss"] for point in result["loss"]]


def block_indices(changed: set[str]) -> set[str]:
    return {name.split(".")[1] for name in changed if name.startswith("layers.")}


@pytest.fixture(scope="module")
def stages(tmp_path_factory, tiny_qwen2_dir):
    """SFT, then the reward model, from the tiny Qwen2: (root, sft dir, reward model dir)."""
    root = tmp_path_factory.mktemp("qwen2-stages")
    write_jsonl(root / "sft.jsonl", instruction_records(40))
    write_jsonl(root / "pairs.jsonl", marker_pairs(16))
    settings = {**SFT_SETTINGS, "epochs": 2}
    train_sft(tiny_qwen2_dir, root / "sft.jsonl", root / "sft", settings, root / "ck-sft", threads=1)
    train_reward_model(
        root / "sft", root / "pairs.jsonl", root / "rm", REWARD_MODEL_SETTINGS, root / "ck-rm", threads=1
    )
    return root, root / "sft", root / "rm"


# ---- every stage ---------------------------------------------------------------------------


def test_qwen2_sft_lowers_the_loss(stages, tiny_qwen2_dir):
    _, sft_dir, _ = stages
    result = summary(sft_dir)
    assert result["steps"] == 10 and all(math.isfinite(loss) for loss in losses(result))
    assert losses(result)[-1] < losses(result)[0] - 0.5
    assert result["trainable_parameters"] == result["total_parameters"]
    assert any(not torch.equal(value, state(sft_dir)[name]) for name, value in state(tiny_qwen2_dir).items())
    assert load_tokenizer(sft_dir).pad_token is not None


def test_qwen2_reward_model_trains_only_its_top_blocks(stages):
    _, sft_dir, reward_model_dir = stages
    result = summary(reward_model_dir)
    assert all(math.isfinite(loss) for loss in losses(result)) and losses(result)[-1] < losses(result)[0]
    assert result["held_out_accuracy"] > 0.9
    changed = changed_blocks(
        state(sft_dir), state(reward_model_dir, AutoModelForSequenceClassification, num_labels=1), "model."
    )
    assert block_indices(changed) == {"2", "3"}  # layers 0 and 1 bit-identical
    assert all(name.startswith(("layers.2.", "layers.3.", "norm.", "embed_tokens.")) for name in changed)


def test_qwen2_ppo_trains_only_the_top_block(stages, tmp_path):
    root, sft_dir, reward_model_dir = stages
    train_ppo(
        sft_dir, reward_model_dir, root / "sft.jsonl", tmp_path / "rlhf", PPO_SETTINGS, tmp_path / "ck", threads=1
    )
    result = summary(tmp_path / "rlhf")
    assert result["episodes"] == 16 and all(math.isfinite(p["value"]) for p in result["reward"] + result["kl"])
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "rlhf")
    assert type(policy).__name__ == "Qwen2ForCausalLM"
    changed = changed_blocks(state(sft_dir), policy.state_dict(), "model.")
    assert block_indices(changed) == {"3"}
    assert all(name.startswith(("layers.3.", "norm.", "embed_tokens.")) for name in changed)


def test_qwen2_dpo_with_frozen_embeddings_trains_its_untied_output_layer(stages, tmp_path):
    root, sft_dir, _ = stages
    train_dpo(sft_dir, root / "pairs.jsonl", tmp_path / "dpo", DPO_SETTINGS, tmp_path / "ck", threads=1)
    result = summary(tmp_path / "dpo")
    assert all(math.isfinite(loss) for loss in losses(result)) and losses(result)[-1] < losses(result)[0]
    before, after = state(sft_dir), state(tmp_path / "dpo")
    changed = changed_blocks(before, after, "model.")
    assert block_indices(changed) == {"2", "3"}
    assert all(name.startswith(("layers.2.", "layers.3.", "norm.")) for name in changed)  # embeddings frozen
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])  # Qwen2.5-7B's is not tied


def test_qwen2_evaluation_returns_a_score(stages, tmp_path):
    _, sft_dir, _ = stages
    files = prepare_all(tmp_path / "okapi", tmp_path / "data")
    out = {"arc": tmp_path / "scores" / "arc.json"}
    evaluate_model(sft_dir, {"arc": files["arc"]}, PROTOCOL, out, tmp_path / "work", threads=2)
    score = json.loads(out["arc"].read_text(encoding="utf-8"))
    assert score["n_samples"] > 0 and 0.0 <= score["metrics"]["acc_norm"] <= 1.0


def no_chat_template(*args, **kwargs):
    raise AssertionError("a chat template was applied to an Alpaca prompt")


@pytest.mark.parametrize(("tokenizer_of", "pad"), [("pad_is_eos_dir", "<pad>"), ("nothing_spare_dir", "</s>")])
def test_sft_labels_keep_the_final_eos_whatever_the_pad_and_no_chat_template_applies(
    tokenizer_of, pad, request, tmp_path, monkeypatch
):
    model_dir = request.getfixturevalue(tokenizer_of)
    tokenizer = load_tokenizer(model_dir)
    assert tokenizer.chat_template and tokenizer.unk_token is None and tokenizer.bos_token is None
    eos = tokenizer.eos_token_id
    # The shipped pad = eos gives way to a spare special token (<pad>); with none, it stays the eos.
    assert tokenizer.pad_token == pad
    monkeypatch.setattr(type(tokenizer), "apply_chat_template", no_chat_template)
    monkeypatch.setattr(sft, "run_trainer", lambda stage, build, **kwargs: build(run_precision(1)))
    # Padded batches, where a pad could hide the eos (a padding-free batch has no pad).
    monkeypatch.setattr(sft, "padding_free_batches", lambda model, lengths, micro_batch: False)
    records = instruction_records(8)
    write_jsonl(tmp_path / "sft.jsonl", records)
    settings = {**SFT_SETTINGS, "held_out_fraction": 0.0, "epochs": 1}
    trainer = train_sft(model_dir, tmp_path / "sft.jsonl", tmp_path / "out", settings, tmp_path / "ck").trainer
    texts = {
        tuple(tokenizer(p["prompt"] + p["completion"])["input_ids"] + [eos]) for p in map(prompt_completion, records)
    }
    examples = list(trainer.train_dataset)
    assert {tuple(example["input_ids"]) for example in examples} <= texts  # the raw Alpaca text, then eos
    assert all(example["labels"][-1] == eos for example in examples)
    batch = trainer.data_collator(examples)
    lengths = torch.tensor([len(example["input_ids"]) for example in examples])
    assert len(set(lengths.tolist())) > 1  # the batch is padded (with <pad>, or with eos)
    assert torch.equal(batch["attention_mask"].sum(1), lengths)
    assert torch.equal((batch["labels"] == eos).sum(1), torch.ones(len(examples), dtype=torch.long))
    assert torch.equal(batch["labels"][torch.arange(len(examples)), lengths - 1], torch.full((len(examples),), eos))
    trainer.train()
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
