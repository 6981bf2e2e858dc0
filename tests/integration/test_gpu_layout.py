"""The sized micro-batch: one SFT step of the tiny Llama at the planned micro-batch gives the
loss and gradients of micro-batch 2."""

import json

import pytest
import torch
from transformers import TrainerCallback
from transformers.trainer import DEFAULT_CALLBACKS

from okapi_pipeline.config import load_schema, validate_config
from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.training.sft import train_sft
from tests.support.workflow import merged_config


class _Gradients(TrainerCallback):
    """Every parameter's gradient just before the first optimizer step."""

    def __init__(self):
        self.gradients = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.gradients is None:
            self.gradients = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def one_sft_step(base, data, out, micro_batch) -> tuple[float, dict]:
    # The demo's SFT settings (schema defaults filled in): one step of 8 examples, no held-out part.
    demo = validate_config(merged_config(), load_schema())["sft"]
    settings = {
        **demo,
        "report_to": "none",
        "epochs": 1,
        "lr_scheduler": "constant",
        "warmup_steps": 0,
        "max_length": 64,
        "per_device_batch_size": micro_batch,
        "gradient_checkpointing": False,
        "effective_batch_size": 8,
        "held_out_fraction": 0.0,
    }
    recorder = _Gradients()
    DEFAULT_CALLBACKS.append(recorder)
    try:
        train_sft(base, data, out, settings, out.parent / f"{out.name}-checkpoints", threads=1)
    finally:
        DEFAULT_CALLBACKS.remove(recorder)
    return json.loads((out / "training_summary.json").read_text()), recorder.gradients


def test_the_sized_micro_batch_gives_the_loss_and_gradients_of_micro_batch_2(tmp_path, tiny_llama_dir):
    data = tmp_path / "sft.jsonl"
    records = [
        {"id": f"alpaca-{i}", "instruction": f"Câu hỏi số {i}?", "input": "", "output": "Con mèo. " * (1 + i % 4)}
        for i in range(8)
    ]
    write_jsonl(data, records)  # one optimizer step of 8 examples of different lengths
    sized, sized_gradients = one_sft_step(tiny_llama_dir, data, tmp_path / "auto", "auto")
    pairs, pair_gradients = one_sft_step(tiny_llama_dir, data, tmp_path / "two", 2)
    assert sized["steps"] == pairs["steps"] == 1
    # On the CPU memory is no limit: the whole batch at once, against 4 accumulated micro-batches of 2.
    assert sized["batch_layout"] == {"micro_batch": 8, "accumulation": 1, "checkpointing": False, "processes": 1}
    assert pairs["batch_layout"] == {"micro_batch": 2, "accumulation": 4, "checkpointing": False, "processes": 1}
    assert sized["loss"][0]["loss"] == pytest.approx(pairs["loss"][0]["loss"], rel=1e-5)
    assert sized_gradients.keys() == pair_gradients.keys() and sized_gradients
    for name, gradient in sized_gradients.items():
        torch.testing.assert_close(gradient, pair_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
