"""Today's base models: a tiny Qwen2 (Qwen2.5-7B's architecture) goes through every stage,
and what depends on the architecture (blocks, FSDP wrapping, pad token) comes from the model."""

import json
import math
import os
import shutil
from unittest import mock

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from okapi_pipeline.evaluation.evaluate import evaluate_model
from okapi_pipeline.jsonl import write_jsonl
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training import sft
from okapi_pipeline.training.dpo import train_dpo
from okapi_pipeline.training.launch import CONFIG_DIR
from okapi_pipeline.training.modeling import (
    load_scorer,
    load_tokenizer,
    modules_after_blocks,
    run_precision,
    transformer_blocks,
)
from okapi_pipeline.training.ppo import train_ppo
from okapi_pipeline.training.reward_model import score_sequences, tokenize_pair, train_reward_model
from okapi_pipeline.training.sft import prompt_completion, train_sft
from tests.test_evaluate import PROTOCOL, prepare_all
from tests.test_training import (
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

ARCHITECTURES = {"llama": "LlamaDecoderLayer", "bloom": "BloomBlock", "qwen2": "Qwen2DecoderLayer"}


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


# ---- the architecture --------------------------------------------------------------------


def test_tiny_qwen2_is_built_like_qwen2_5_7b(tiny_qwen2_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    config = model.config
    assert (type(config).__name__, config.num_hidden_layers, config.hidden_size) == ("Qwen2Config", 4, 32)
    # Grouped-query attention, biases on q/k/v, an output layer of its own (7B does not tie).
    assert config.num_key_value_heads < config.num_attention_heads
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    assert not config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert config.max_position_embeddings >= 2048 and config.sliding_window is None
    with torch.no_grad():
        model(input_ids=torch.ones(1, 1500, dtype=torch.long))  # a 25-shot prompt fits
    built = json.loads((tiny_qwen2_dir / "build_summary.json").read_text())
    assert built["config_class"] == "Qwen2Config" and built["parameters"] == model.num_parameters()
    assert built["pretraining"]["loss_per_epoch"][-1] < built["pretraining"]["loss_per_epoch"][0]
    assert load_tokenizer(tiny_qwen2_dir).pad_token == "<pad>"


@pytest.mark.parametrize(
    ("build", "vocabulary", "parameters"),
    [
        # Qwen2.5-7B: 28 query heads share 4 key/value heads, untied lm_head: 7,615,616,512.
        ((3584, 18944, 28, 28, 4, "qwen2"), 152064, 7_615_616_512),
        # Llama-3.1-8B is a Llama: 32 heads share 8 key/value heads: 8,030,261,248.
        ((4096, 14336, 32, 32, 8, "llama"), 128256, 8_030_261_248),
    ],
)
def test_real_shapes_have_the_published_parameter_counts(build, vocabulary, parameters):
    from okapi_pipeline.tiny.models import model_config

    names = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_key_value_heads", "architecture")
    tokenizer = mock.MagicMock(bos_token_id=None, eos_token_id=1, pad_token_id=1)
    tokenizer.__len__.return_value = vocabulary
    config = model_config(dict(zip(names, build)), tokenizer)
    with torch.device("meta"):
        assert AutoModelForCausalLM.from_config(config).num_parameters() == parameters


def fsdp_wrapped_classes(model) -> set:
    """The classes accelerate's FSDP wraps in `model`, read from accelerate/fsdp.yaml as
    `accelerate launch` reads it (its environment for the processes)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = str(CONFIG_DIR / "fsdp.yaml")
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", config, "x.py"]))
    env = {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_"))}
    assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env  # no class named: the model's _no_split_modules
    # Syncing module states needs a GPU at construction; it does not change the wrapping.
    env.update(FSDP_SYNC_MODULE_STATES="false", FSDP_CPU_RAM_EFFICIENT_LOADING="false")
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    plugin.set_auto_wrap_policy(model)
    return set(plugin.auto_wrap_policy.keywords["transformer_layer_cls"])


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_blocks_final_norm_and_fsdp_units_come_from_the_model(architecture, request):
    directory = request.getfixturevalue(f"tiny_{architecture}_dir")
    for model in (
        AutoModelForCausalLM.from_pretrained(directory),
        AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1),
    ):
        blocks = transformer_blocks(model)
        assert len(blocks) == 4 and {type(block).__name__ for block in blocks} == {ARCHITECTURES[architecture]}
        final = {"llama": "norm", "qwen2": "norm", "bloom": "ln_f"}[architecture]
        assert modules_after_blocks(model) == [getattr(model.base_model, final)]
        # FSDP shards block by block the very blocks top-k training freezes or trains.
        wrapped = fsdp_wrapped_classes(model)
        assert [m for m in model.modules() if isinstance(m, tuple(wrapped))] == list(blocks)


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


# ---- pad == eos (Qwen2.5 sets it, Llama-3 gets it) and no chat template ---------------------


@pytest.fixture(scope="module")
def pad_is_eos_dir(tmp_path_factory, tiny_qwen2_dir):
    """The tiny Qwen2 with a Qwen2.5-style tokenizer: pad = eos, no unk, no BOS added, a chat template."""
    out = tmp_path_factory.mktemp("pad-is-eos")
    for path in tiny_qwen2_dir.iterdir():
        shutil.copy(path, out)
    (out / "tokenizer.json").write_text(
        json.dumps({**json.loads((out / "tokenizer.json").read_text()), "post_processor": None})
    )
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.update(
        tokenizer_class="Qwen2Tokenizer",
        bos_token=None,
        unk_token=None,
        pad_token=config["eos_token"],
        chat_template="{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>{% endfor %}",
    )
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def no_chat_template(*args, **kwargs):
    raise AssertionError("a chat template was applied to an Alpaca prompt")


@pytest.fixture(scope="module")
def nothing_spare_dir(tmp_path_factory, pad_is_eos_dir):
    """pad_is_eos_dir with <pad> and <unk> made plain tokens: no spare special token, so the pad stays the eos."""
    out = tmp_path_factory.mktemp("nothing-spare")
    for path in pad_is_eos_dir.iterdir():
        shutil.copy(path, out)
    backend = json.loads((out / "tokenizer.json").read_text())
    for token in backend["added_tokens"]:
        token["special"] = token["content"] in ("<s>", "</s>")
    (out / "tokenizer.json").write_text(json.dumps(backend))
    return out


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


@pytest.mark.parametrize("tokenizer_of", ["tiny_qwen2_dir", "pad_is_eos_dir", "nothing_spare_dir"])
def test_reward_model_and_ppo_read_the_reward_at_the_same_token(tokenizer_of, request, tiny_qwen2_dir):
    """RewardTrainer scores prompt + response + eos at its last non-pad token; trl's PPO reads
    the reward model at the last token before the first pad: the final eos, as load_tokenizer
    pads with a spare special token where the tokenizer ships pad = eos. Only with no spare
    token (nothing_spare_dir) is the pad the eos: both then skip the final eos (the reward
    sits on the response's last token), but they still agree."""
    from trl.experimental.utils import get_reward

    tokenizer = load_tokenizer(request.getfixturevalue(tokenizer_of))
    scorer = load_scorer(tiny_qwen2_dir, tokenizer, seed=0, dtype=torch.float32).eval()
    pairs = marker_pairs(2, per_prompt=1)
    sequences = [tokenize_pair(pair, tokenizer, 96)["chosen_ids"] for pair in pairs]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in sequences)
    trained_scores = score_sequences(scorer, tokenizer, sequences)
    for pair, ids, trained in zip(pairs, sequences, trained_scores):
        context = len(tokenizer(alpaca_prompt(pair["instruction"]))["input_ids"])
        query_response = torch.tensor([ids + [tokenizer.pad_token_id] * 3])  # PPO pads after the eos
        with torch.no_grad():
            _, score, end = get_reward(scorer, query_response, tokenizer.pad_token_id, context)
        assert score.item() == pytest.approx(trained, abs=1e-5)
        pad_is_eos = tokenizer.pad_token_id == tokenizer.eos_token_id
        assert end.item() == len(ids) - (2 if pad_is_eos else 1)
