import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from okapi_pipeline.tiny.models import build_tiny_model, model_config


def test_tokenizer_round_trips_multilingual_text_and_has_special_tokens(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    text = "Thủ đô của Pháp là Paris. ফ্রান্সের রাজধানী. Ibu kota 🦙"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token} == {
        "<s>",
        "</s>",
        "<unk>",
        "<pad>",
    }
    assert len(tokenizer) <= 600


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bloom_dir"])
def test_tiny_models_reload_with_both_auto_classes(fixture, request):
    directory = request.getfixturevalue(fixture)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    causal = AutoModelForCausalLM.from_pretrained(directory)
    scorer = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1)
    batch = tokenizer(["Con mèo ngồi", "The cat sits on the mat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert causal(**batch).logits.shape[:2] == batch["input_ids"].shape
        assert scorer(**batch).logits.shape == (2, 1)
    assert causal.config.num_hidden_layers == 4
    summary = json.loads((directory / "build_summary.json").read_text())
    assert summary["build"]["num_layers"] == 4
    assert summary["parameters"] == sum(p.numel() for p in causal.parameters())


def test_llama_fits_25_shot_prompts(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert model.config.max_position_embeddings >= 2048
    with torch.no_grad():
        model(input_ids=torch.ones(1, 1500, dtype=torch.long))


def test_pretraining_lowers_the_loss(tiny_llama_dir):
    losses = json.loads((tiny_llama_dir / "build_summary.json").read_text())["pretraining"]["loss_per_epoch"]
    assert losses[-1] < losses[0]


def test_same_seed_builds_identical_weights(tmp_path, tiny_tokenizer_dir, tiny_corpus_dir, tiny_bloom_dir):
    summary = json.loads((tiny_bloom_dir / "build_summary.json").read_text())
    pretraining = {
        "max_length": summary["pretraining"]["max_length"],
        "pretrain_epochs": summary["pretraining"]["epochs"],
        "seed": summary["pretraining"]["seed"],
    }
    build_tiny_model(tiny_tokenizer_dir, tiny_corpus_dir, tmp_path, summary["build"], pretraining, threads=1)
    first = AutoModelForCausalLM.from_pretrained(tiny_bloom_dir).state_dict()
    again = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_unknown_architecture_is_refused(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    with pytest.raises(ValueError, match="unknown architecture"):
        model_config({"architecture": "gpt9", "hidden_size": 8, "num_layers": 1, "num_heads": 1}, tokenizer)


# ---- the one loader ----------------------------------------------------------------------


def test_on_cpu_the_run_is_fp32():
    from okapi_pipeline.training.modeling import Precision, run_precision

    if torch.cuda.is_available():
        pytest.skip("a CPU-only check")
    precision = run_precision(threads=1)
    assert precision == Precision("cpu", False)
    assert (precision.dtype, precision.dtype_name, precision.train_dtype) == (torch.float32, "float32", torch.float32)


@pytest.mark.parametrize(
    ("changes", "spare", "pad"),
    [
        ({"pad_token": None}, True, "<unk>"),  # LLaMA-1: no pad, the unk
        ({"pad_token": "</s>"}, True, "<unk>"),  # pad == eos: replaced, by the unk first
        ({"pad_token": None, "unk_token": None}, True, "<pad>"),  # Llama-3.1: a spare special token
        ({"pad_token": "</s>", "unk_token": None}, True, "<pad>"),  # Qwen2.5: pad == eos, no unk
        ({"pad_token": None, "unk_token": None}, False, "</s>"),  # nothing spare: the eos, with a warning
    ],
)
def test_a_tokenizer_without_a_pad_of_its_own_pads_with_unk_else_a_spare_special_token_else_eos(
    tmp_path, tiny_tokenizer_dir, changes, spare, pad, caplog
):
    """`changes`: tokenizer settings replaced (None: removed); `spare`: whether <pad> and
    <unk> stay special added tokens of tokenizer.json (a token left unnamed is still spare)."""
    from okapi_pipeline.training.modeling import load_tokenizer

    def changed(settings: dict) -> dict:
        kept = {k: v for k, v in settings.items() if k not in changes}
        return {**kept, **{k: v for k, v in changes.items() if v is not None}}

    config = json.loads((tiny_tokenizer_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(changed(config)))
    special = tiny_tokenizer_dir / "special_tokens_map.json"
    if special.exists():
        (tmp_path / special.name).write_text(json.dumps(changed(json.loads(special.read_text()))))
    backend = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())
    for token in backend["added_tokens"]:
        token["special"] = spare or token["content"] in ("<s>", "</s>")
    (tmp_path / "tokenizer.json").write_text(json.dumps(backend))
    with caplog.at_level("INFO", logger="okapi_pipeline.training.modeling"):
        tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.pad_token == pad
    pads_with_eos = [r for r in caplog.records if r.levelname == "WARNING" and "eos" in r.getMessage()]
    assert bool(pads_with_eos) == (pad == "</s>")


def test_generation_loads_left_padding_in_eval_mode_on_the_run_device(tiny_llama_dir):
    from okapi_pipeline.training.modeling import load_for_generation

    tokenizer, model, precision = load_for_generation(tiny_llama_dir, threads=1)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<pad>"
    assert not model.training
    assert model.device.type == precision.device and model.dtype == precision.dtype
    assert model.config.pad_token_id == tokenizer.pad_token_id
