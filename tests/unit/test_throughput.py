"""Throughput choices change how a step is computed, never what: padding-free SFT batches
give the padded batches' loss and gradients, nothing pads to max_length, and the kernel
choices follow the device, the model and `kernels`."""

import pytest
import torch

from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.training import sft, throughput
from okapi_pipeline.training.modeling import Precision, load_causal_lm, load_tokenizer, run_precision
from okapi_pipeline.training.sft import prompt_completion, sft_examples, train_sft
from okapi_pipeline.training.throughput import (
    batch_flops,
    kernel_arguments,
    padding_free,
    padding_free_batches,
    speed_arguments,
)
from tests.support.workflow import REPO

DEMO_RECORDS = REPO / "demo" / "instructions.jsonl"


SETTINGS = {
    "report_to": "none",
    "finetuning": "full",
    "epochs": 1,
    "learning_rate": 1e-3,
    "lr_scheduler": "constant",
    "warmup_steps": 0,
    "adam_betas": [0.9, 0.95],
    "weight_decay": 0.0,
    "max_length": 1024,
    "per_device_batch_size": 4,
    "gradient_checkpointing": False,
    "effective_batch_size": 4,
    "held_out_fraction": 0.0,
    "completion_only_loss": False,
    "seed": 0,
    "save_steps": 500,
    "kernels": "auto",
}


LIGER_TYPES = frozenset({"llama", "qwen2", "mistral"})


def records(count: int = 8) -> list[dict]:
    return read_jsonl(DEMO_RECORDS)[:count]


def sft_trainer(model_dir, tmp_path, monkeypatch, flattened: bool | None = None):
    """The SFTTrainer train_sft builds (not trained); `flattened` forces the batches' layout."""
    monkeypatch.setattr(sft, "run_trainer", lambda stage, build, **kwargs: build(run_precision(1)))
    if flattened is not None:
        monkeypatch.setattr(sft, "padding_free_batches", lambda model, lengths, micro_batch: flattened)
    write_jsonl(tmp_path / "sft.jsonl", records())
    return train_sft(model_dir, tmp_path / "sft.jsonl", tmp_path / "out", SETTINGS, tmp_path / "ck").trainer


def loss_and_gradients(trainer, examples: list[dict]) -> tuple[float, dict]:
    batch = trainer.data_collator(examples)
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


# ---- padding-free SFT batches -----------------------------------------------------------------


def test_padding_free_needs_attention_that_keeps_examples_apart():
    assert padding_free("flash_attention_2", takes_position_ids=True)
    assert padding_free("sdpa", takes_position_ids=True) and padding_free("eager", takes_position_ids=True)
    # Without position ids nothing marks where an example starts (BLOOM's ALiBi).
    assert not padding_free("eager", takes_position_ids=False)
    assert not padding_free("flash_attention_2", takes_position_ids=False)
    assert not padding_free("paged|sdpa", takes_position_ids=True)  # not known to read packed position ids


def test_flattened_batches_cost_less_only_where_padding_outweighs_the_wider_attention():
    # Examples of one length: nothing to save, and a flattened row attends over 4 examples.
    padded, flattened = batch_flops([100] * 8, 4, token_flops=1000, pair_flops=10)
    assert flattened > padded
    # Short examples beside long ones: the padded batches compute mostly padding.
    padded, flattened = batch_flops([10, 100, 10, 10] * 2, 4, token_flops=1000, pair_flops=10)
    assert flattened < padded
    assert padded == 2 * 4 * 100 * (1000 + 10 * 100) and flattened == 2 * 130 * (1000 + 10 * 130)
    # One example a micro-batch: the same computation either way.
    assert len(set(batch_flops([10, 100, 30], 1, 1000, 10))) == 1


@pytest.mark.parametrize("model_of", ["tiny_llama_dir", "tiny_qwen2_dir", "tiny_bloom_dir"])
def test_padding_free_is_chosen_from_the_model_and_the_lengths(model_of, request):
    model_dir = request.getfixturevalue(model_of)
    model = load_causal_lm(model_dir, load_tokenizer(model_dir), torch.float32)
    # sdpa (LLaMA, Qwen2): where flattening saves compute; BLOOM (eager, no position ids): never.
    assert padding_free_batches(model, [4, 60, 4, 4] * 8, 4) is (model_of != "tiny_bloom_dir")
    assert padding_free_batches(model, [60, 58, 60, 59] * 8, 4) is False
    assert padding_free_batches(model, [4, 60, 4, 4] * 8, 1) is False


@pytest.mark.parametrize("model_of", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_a_padding_free_batch_gives_the_loss_and_gradients_of_the_padded_batch(
    model_of, request, tmp_path, monkeypatch
):
    model_dir = request.getfixturevalue(model_of)
    free = sft_trainer(model_dir, tmp_path / "free", monkeypatch, flattened=True)
    padded = sft_trainer(model_dir, tmp_path / "padded", monkeypatch, flattened=False)
    assert free.data_collator.padding_free and not padded.data_collator.padding_free
    examples = list(free.train_dataset)[:4]
    assert examples == list(padded.train_dataset)[:4]
    assert len({len(e["input_ids"]) for e in examples}) > 1  # the padded batch does pad
    flat = free.data_collator(examples)
    assert flat["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))

    loss_free, gradients_free = loss_and_gradients(free, examples)
    loss_padded, gradients_padded = loss_and_gradients(padded, examples)
    assert loss_free == pytest.approx(loss_padded, rel=1e-5)
    assert gradients_free.keys() == gradients_padded.keys() and len(gradients_free) > 0
    for name, gradient in gradients_free.items():
        torch.testing.assert_close(gradient, gradients_padded[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bloom_would_attend_across_examples_in_a_flattened_batch(tiny_bloom_dir, tmp_path, monkeypatch):
    """Why BLOOM keeps padded batches: flattened, its second example sees the first."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer = sft_trainer(tiny_bloom_dir, tmp_path, monkeypatch)
    assert not trainer.data_collator.padding_free
    examples = list(trainer.train_dataset)[:2]
    first, second = (len(e["input_ids"]) for e in examples)
    model = trainer.model.eval()
    flattened = DataCollatorForLanguageModeling(pad_token_id=trainer.processing_class.pad_token_id, padding_free=True)
    padded, flat = trainer.data_collator(examples), flattened(examples)
    with torch.no_grad():  # the backbone's output (trl's loss patch returns no logits)
        alone = model.base_model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
        together = model.base_model(input_ids=flat["input_ids"], position_ids=flat["position_ids"])
    difference = alone.last_hidden_state[1, :second] - together.last_hidden_state[0, first:]
    assert difference.abs().max() > 1e-2


# ---- no padding to max_length ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_of", "flattened"), [("tiny_llama_dir", True), ("tiny_llama_dir", False), ("tiny_bloom_dir", None)]
)
def test_sft_batches_hold_no_padding_beyond_the_longest_example(model_of, flattened, request, tmp_path, monkeypatch):
    trainer = sft_trainer(request.getfixturevalue(model_of), tmp_path, monkeypatch, flattened)
    examples = list(trainer.train_dataset)[:4]
    lengths = [len(e["input_ids"]) for e in examples]
    assert max(lengths) < SETTINGS["max_length"]
    batch = trainer.data_collator(examples)
    assert trainer.data_collator.padding_free is bool(flattened)
    if flattened:
        assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    else:
        assert batch["input_ids"].shape == (4, max(lengths))
        assert batch["attention_mask"].sum(1).tolist() == lengths


@pytest.mark.parametrize("completion_only_loss", [False, True])
def test_sft_examples_are_the_ones_trl_tokenizes_and_cuts(completion_only_loss, tiny_llama_dir):
    """sft_examples stands in for trl's own tokenization (trl cuts nothing padding-free):
    the same token ids and labels, cut at max_length, the same examples dropped."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(tiny_llama_dir)
    rows = records(12)
    # Long enough to keep the shortest record whole (with its eos), short enough to cut the
    # others and, with the loss on completions only, to leave some with no completion token.
    pairs = [prompt_completion(r) for r in rows]
    max_length = min(len(tokenizer(p["prompt"] + p["completion"] + tokenizer.eos_token)["input_ids"]) for p in pairs)
    assert max(len(tokenizer(p["prompt"])["input_ids"]) for p in pairs) >= max_length

    def prepared(dataset, max_length):
        args = SFTConfig(
            output_dir="unused",
            max_length=max_length,
            completion_only_loss=completion_only_loss,
            use_cpu=True,
            bf16=False,
            report_to="none",
        )
        model = load_causal_lm(tiny_llama_dir, tokenizer, torch.float32)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        return [(e["input_ids"], e["labels"]) for e in trainer.train_dataset]

    ours = prepared(Dataset.from_list(sft_examples(rows, tokenizer, max_length, completion_only_loss)), None)
    trls = prepared(Dataset.from_list([prompt_completion(r) for r in rows]), max_length)
    assert ours == trls
    assert max(len(ids) for ids, _ in ours) == max_length
    assert sum(ids[-1] == tokenizer.eos_token_id for ids, _ in ours) == 1  # the one kept whole
    assert (len(ours) < len(rows)) is completion_only_loss


# ---- kernels --------------------------------------------------------------------------------


def test_cpu_and_plain_take_plain_adamw_and_no_liger():
    for stage in ("sft", "reward_model", "dpo"):
        expected = {"optim": "adamw_torch", "use_liger_kernel": False}
        assert kernel_arguments(stage, "cpu", "auto", "llama", LIGER_TYPES) == expected
        assert kernel_arguments(stage, "cuda", "plain", "llama", LIGER_TYPES) == expected
    assert kernel_arguments("ppo", "cpu", "auto", None, None) == {"optim": "adamw_torch"}


def test_cuda_takes_fused_adamw_and_liger_where_it_patches_the_model():
    fused = {"optim": "adamw_torch_fused"}
    # No liger_kernel installed: the fused optimizer only.
    assert kernel_arguments("sft", "cuda", "auto", "llama", None) == {**fused, "use_liger_kernel": False}
    assert kernel_arguments("dpo", "cuda", "auto", "llama", None) == {**fused, "use_liger_kernel": False}
    # Installed: SFT and the reward model where liger patches the model type, not BLOOM.
    assert kernel_arguments("sft", "cuda", "auto", "llama", LIGER_TYPES) == {**fused, "use_liger_kernel": True}
    assert kernel_arguments("sft", "cuda", "auto", "bloom", LIGER_TYPES) == {**fused, "use_liger_kernel": False}
    assert kernel_arguments("reward_model", "cuda", "auto", "qwen2", LIGER_TYPES) == {
        **fused,
        "use_liger_kernel": True,
        "liger_kernel_config": {"fused_linear_cross_entropy": False},  # a one-logit head
    }
    assert kernel_arguments("reward_model", "cuda", "auto", "bloom", LIGER_TYPES)["use_liger_kernel"] is False
    # DPO's fused linear loss is trl's own: any model.
    assert kernel_arguments("dpo", "cuda", "auto", "bloom", LIGER_TYPES) == {**fused, "use_liger_kernel": True}
    # PPO: trl's PPOTrainer applies no Liger kernels; the optimizer is its Trainer's.
    assert kernel_arguments("ppo", "cuda", "auto", None, LIGER_TYPES) == fused


def test_the_kernel_choices_are_fields_every_trainer_config_takes():
    from trl import DPOConfig, RewardConfig, SFTConfig
    from trl.experimental.ppo import PPOConfig

    configs = {"sft": SFTConfig, "reward_model": RewardConfig, "dpo": DPOConfig, "ppo": PPOConfig}
    for stage, config_class in configs.items():
        for device, liger in (("cpu", None), ("cuda", LIGER_TYPES)):
            arguments = kernel_arguments(stage, device, "auto", "llama", liger)
            config = config_class(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **arguments)
            assert config.optim == arguments["optim"]
            assert config.use_liger_kernel is arguments.get("use_liger_kernel", False)


def test_speed_arguments_read_the_device_the_model_and_the_setting(tiny_bloom_dir, monkeypatch):
    cpu = Precision("cpu", False)
    assert speed_arguments("sft", cpu, SETTINGS) == {"optim": "adamw_torch", "use_liger_kernel": False}
    assert speed_arguments("ppo", cpu, {"kernels": "plain"}) == {"optim": "adamw_torch"}
    cuda = Precision("cuda", True)
    monkeypatch.setattr(throughput, "liger_model_types", lambda: None)  # liger_kernel not installed
    assert speed_arguments("sft", cuda, SETTINGS) == {"optim": "adamw_torch_fused", "use_liger_kernel": False}
    monkeypatch.setattr(throughput, "liger_model_types", lambda: LIGER_TYPES)
    bloom = load_causal_lm(tiny_bloom_dir, load_tokenizer(tiny_bloom_dir), torch.float32)
    assert speed_arguments("sft", cuda, SETTINGS, bloom)["use_liger_kernel"] is False
    assert speed_arguments("dpo", cuda, SETTINGS, bloom)["use_liger_kernel"] is True
    assert speed_arguments("dpo", cuda, {**SETTINGS, "kernels": "plain"}, bloom)["use_liger_kernel"] is False


def test_liger_is_not_installed_here():
    """liger_kernel needs Triton and CUDA: never required, and read as absent here."""
    assert throughput.liger_model_types() is None
