"""What depends on the architecture (blocks, final norm, FSDP units, the token the reward is
read at) comes from the model: a tiny Qwen2 built like Qwen2.5-7B, and the real shapes' sizes."""

import json
import os
from unittest import mock

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.launch import CONFIG_DIR
from okapi_pipeline.training.modeling import load_scorer, load_tokenizer, modules_after_blocks, transformer_blocks
from okapi_pipeline.training.reward_model import score_sequences, tokenize_pair
from tests.support.training import marker_pairs

ARCHITECTURES = {"llama": "LlamaDecoderLayer", "bloom": "BloomBlock", "qwen2": "Qwen2DecoderLayer"}


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
