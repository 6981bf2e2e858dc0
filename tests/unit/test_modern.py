"""Today's base models (configs/modern.yaml): Llama-3.1-8B and Qwen2.5-7B.

Their tokenizers are mimicked locally (no download): a small byte-level BPE with the
special tokens, ids in the same order, and chat template of each. Llama-3.1 has no pad
and no unk; Qwen2.5 pads with its eos. The pad chosen must be a spare special token, so
that the reward model and PPO read the reward at the final eos and PPO trains it.
"""

import json
from pathlib import Path

import pytest
import torch
import yaml

from okapi_pipeline.config import load_schema, validate_config
from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.modeling import load_causal_lm, load_scorer, load_tokenizer, spare_special_token
from okapi_pipeline.training.reward_model import score_sequences, tokenize_pair
from tests.support.training import marker_pairs
from tests.support.workflow import REPO, merged_config

# Llama-3.1's first special tokens (ids 128000-128010, then reserved ones up to 128255).
LLAMA_3_1_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|reserved_special_token_3|>",
    "<|reserved_special_token_4|>",
]


LLAMA_3_1_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{%- if message.tool_calls is defined %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n"
    "<|python_tag|>' + message.tool_calls | tojson + '<|eom_id|>' }}{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


# Qwen2.5's added tokens (ids 151643-151664): (content, special).
QWEN2_5_ADDED = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]


QWEN2_5_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools\\n<tools>' + tools | tojson + '</tools>\\n"
    "Return <tool_call></tool_call> tags.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content"
    " + '<|im_end|>' + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


# The tokenizer's settings, as each model's tokenizer_config.json has them.
MIMICS = {
    "llama-3.1": {
        "added": [(token, True) for token in LLAMA_3_1_SPECIAL],
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": None,
        "chat_template": LLAMA_3_1_TEMPLATE,
        "spare_pad": "<|finetune_right_pad_id|>",
        "architecture": "llama",
    },
    "qwen2.5": {
        "added": QWEN2_5_ADDED,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "chat_template": QWEN2_5_TEMPLATE,
        "spare_pad": "<|vision_pad|>",
        "architecture": "qwen2",
    },
}


def build_mimic_tokenizer(out: Path, corpus_dir: Path, mimic: dict, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on the test corpus with the mimicked model's added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train([str(path) for path in sorted(corpus_dir.glob("*.txt"))], trainer)
    for content, special in mimic["added"]:  # one at a time: the ids follow the model's order
        token = AddedToken(content, special=special, normalized=False)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
    if mimic["bos_token"]:  # Llama-3.1 starts every text with <|begin_of_text|>; Qwen2.5 adds nothing
        bos = mimic["bos_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
        )
    named = {key: mimic[key] for key in ("bos_token", "eos_token", "pad_token") if mimic[key]}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=2048, **named)
    tokenizer.chat_template = mimic["chat_template"]
    tokenizer.save_pretrained(out)
    return out


def save_tiny_model(out: Path, tokenizer_dir: Path, architecture: str, vocab_size: int) -> Path:
    """A random tiny causal LM with `vocab_size` embedding rows, saved beside its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from okapi_pipeline.tiny.models import model_config

    build = {"architecture": architecture, "hidden_size": 32, "intermediate_size": 64, "num_layers": 2}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = model_config({**build, "num_heads": 4}, tokenizer)
    config.vocab_size = vocab_size
    set_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=list(MIMICS))
def mimic(request, tmp_path_factory, tiny_corpus_dir):
    """(name, settings, tokenizer dir, model dir): the model has spare embedding rows, as
    Qwen2.5-7B's 152,064 for 151,665 tokens (Llama-3.1's 128,256 are exactly its tokens)."""
    name = request.param
    settings = MIMICS[name]
    root = tmp_path_factory.mktemp(name)
    tokenizer_dir = build_mimic_tokenizer(root / "tokenizer", tiny_corpus_dir, settings)
    from transformers import AutoTokenizer

    rows = len(AutoTokenizer.from_pretrained(tokenizer_dir)) + (0 if name == "llama-3.1" else 16)
    return name, settings, tokenizer_dir, save_tiny_model(root / "model", tokenizer_dir, settings["architecture"], rows)


def test_the_mimics_have_the_real_tokenizers_pad_problem(mimic):
    """As shipped: Llama-3.1 has neither pad nor unk; Qwen2.5's pad is its eos."""
    from transformers import AutoTokenizer

    name, settings, tokenizer_dir, _ = mimic
    shipped = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert shipped.unk_token is None and shipped.eos_token == settings["eos_token"]
    if name == "llama-3.1":
        assert shipped.pad_token is None and shipped("Paris")["input_ids"][0] == shipped.bos_token_id
    else:
        assert shipped.pad_token_id == shipped.eos_token_id and shipped.bos_token is None
    assert ("<|start_header_id|>" if name == "llama-3.1" else "<|im_start|>") in shipped.chat_template


def test_the_pad_is_a_spare_special_token_not_the_eos_nor_in_the_chat_template(mimic):
    _, settings, tokenizer_dir, model_dir = mimic
    for directory in (tokenizer_dir, model_dir):
        tokenizer = load_tokenizer(directory)
        pad, pad_id = tokenizer.pad_token, tokenizer.pad_token_id
        assert pad == settings["spare_pad"]
        assert pad_id != tokenizer.eos_token_id and pad not in (tokenizer.bos_token, tokenizer.eos_token)
        assert tokenizer.added_tokens_decoder[pad_id].special  # never split, skipped when decoding
        assert pad not in tokenizer.chat_template
        messages = [{"role": "user", "content": "Paris?"}, {"role": "assistant", "content": "Paris."}]
        assert pad_id not in tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        text = tokenizer("The capital of France is Paris.")["input_ids"]
        assert pad_id not in text
        assert tokenizer.decode(text + [pad_id] * 2, skip_special_tokens=True) == "The capital of France is Paris."
    tokenizer.save_pretrained(model_dir / "saved")  # a trained model is saved with it: kept when read again
    assert load_tokenizer(model_dir / "saved").pad_token == settings["spare_pad"]


def test_the_models_pad_id_follows_the_tokenizer(mimic):
    _, settings, _, model_dir = mimic
    tokenizer = load_tokenizer(model_dir)
    causal = load_causal_lm(model_dir, tokenizer, torch.float32)
    scorer = load_scorer(model_dir, tokenizer, seed=0, dtype=torch.float32)
    assert causal.config.pad_token_id == scorer.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.pad_token_id < scorer.get_input_embeddings().num_embeddings
    assert causal.config.pad_token_id != causal.config.eos_token_id


def test_reward_model_and_ppo_read_the_reward_at_the_final_eos(mimic):
    """As tests/unit/test_architectures.py checks for the tiny Qwen2: the reward model's training
    scorer and trl's PPO read the same token, and with a spare pad it is the final eos,
    not the token before it (the shipped pad = eos would move both one token back)."""
    from trl.experimental.utils import get_reward

    _, _, _, model_dir = mimic
    tokenizer = load_tokenizer(model_dir)
    scorer = load_scorer(model_dir, tokenizer, seed=0, dtype=torch.float32).eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pairs = marker_pairs(3, per_prompt=1)
    sequences = [tokenize_pair(pair, tokenizer, 96)["chosen_ids"] for pair in pairs]
    assert all(ids[-1] == eos and pad not in ids for ids in sequences)
    assert len({len(ids) for ids in sequences}) > 1  # the scorer's batch is padded
    trained_scores = score_sequences(scorer, tokenizer, sequences)
    for pair, ids, trained in zip(pairs, sequences, trained_scores):
        context = len(tokenizer(alpaca_prompt(pair["instruction"]))["input_ids"])
        with torch.no_grad():
            alone = scorer(input_ids=torch.tensor([ids])).logits.item()  # read at the last token: the eos
            _, score, end = get_reward(scorer, torch.tensor([ids + [pad] * 3]), pad, context)
            _, _, end_if_eos_pads = get_reward(scorer, torch.tensor([ids + [eos] * 3]), eos, context)
        assert end.item() == len(ids) - 1 and ids[end.item()] == eos
        assert score.item() == pytest.approx(trained, abs=1e-5)
        assert alone == pytest.approx(trained, abs=1e-5)
        assert end_if_eos_pads.item() == len(ids) - 2  # what pad = eos did


def test_ppo_keeps_the_eos_token_in_its_loss(mimic):
    """trl's PPO pads each response after its first eos and masks the log-probabilities
    from the first pad on: with a spare pad the eos itself stays in the loss and KL."""
    from trl.experimental.ppo.ppo_trainer import truncate_response
    from trl.experimental.utils import first_true_indices

    _, _, _, model_dir = mimic
    tokenizer = load_tokenizer(model_dir)
    eos = tokenizer.eos_token_id
    words = tokenizer("Paris is", add_special_tokens=False)["input_ids"]
    responses = torch.tensor([words + [eos] + words, words + words + [eos]])
    positions = torch.arange(responses.shape[1])

    def masked(pad: int) -> torch.Tensor:
        """The positions trl's PPO leaves out (its `padding_mask`)."""
        processed = truncate_response(eos, pad, responses)
        sequence_lengths = first_true_indices(processed == pad) - 1
        return positions > sequence_lengths.unsqueeze(1)

    eos_at = first_true_indices(responses == eos)
    rows = torch.arange(len(responses))
    assert not masked(tokenizer.pad_token_id)[rows, eos_at].any()
    assert masked(eos)[rows, eos_at].all()  # pad = eos: the decision to stop was never trained


def test_a_spare_token_is_not_one_the_chat_template_or_the_model_lacks(tmp_path, tiny_corpus_dir):
    settings = dict(MIMICS["llama-3.1"])
    settings["chat_template"] += "{{- '<|finetune_right_pad_id|>' }}"
    tokenizer_dir = build_mimic_tokenizer(tmp_path / "in-template", tiny_corpus_dir, settings)
    tokenizer = load_tokenizer(tokenizer_dir)
    assert tokenizer.pad_token == "<|reserved_special_token_0|>"  # the lowest spare id
    # A model whose embedding rows end before the spare tokens (bos and eos have rows).
    rows = tokenizer.convert_tokens_to_ids("<|reserved_special_token_0|>")
    assert spare_special_token(tokenizer, vocab_size=rows + 1) == "<|reserved_special_token_0|>"
    assert spare_special_token(tokenizer, vocab_size=rows) is None
    model_dir = save_tiny_model(tmp_path / "model", tokenizer_dir, "llama", rows)
    assert load_tokenizer(model_dir).pad_token == "<|end_of_text|>"  # nothing spare fits: the eos
    # A tokenizer whose pad has no row in the model is refused, not padded out of range.
    with pytest.raises(ValueError, match="outside the model's"):
        load_causal_lm(model_dir, tokenizer, torch.float32)


def test_the_demo_tokenizer_keeps_its_own_pad(tiny_tokenizer_dir, tiny_llama_dir):
    for directory in (tiny_tokenizer_dir, tiny_llama_dir):
        tokenizer = load_tokenizer(directory)
        assert tokenizer.pad_token == "<pad>" != tokenizer.eos_token


# ---- configs/modern.yaml -------------------------------------------------------------------


def modern_config() -> dict:
    """config.yaml, then configs/paper.yaml, then configs/modern.yaml, validated, as
    `snakemake --configfile configs/paper.yaml configs/modern.yaml` reads them."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name in ("configs/paper.yaml", "configs/modern.yaml"):
        update_config(config, yaml.safe_load((REPO / name).read_text()))
    return validate_config(config, load_schema())


def test_modern_config_trains_the_two_modern_models_with_the_papers_recipe():
    from okapi_pipeline.config import ranking_responders

    config = modern_config()
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    assert config["models"] == ["qwen2.5-7b", "llama-3.1-8b"]
    assert config["base_models"]["qwen2.5-7b"] == {
        "hub_id": "Qwen/Qwen2.5-7B",
        "parameters": 7.62e9,
        "revision": "main",
    }
    assert config["base_models"]["llama-3.1-8b"]["hub_id"] == "meta-llama/Llama-3.1-8B"
    assert config["base_models"]["llama-3.1-8b"]["parameters"] == 8.03e9
    # One shared ranking set, answered by a model that is trained here.
    assert ranking_responders(config) == ["qwen2.5-7b"]
    assert config["evaluation"]["released_models"] == {}
    # Every stage on the API, a cheaper model than gpt-3.5-turbo, and no spending by default.
    assert config["llm"]["backend"] == "openai" and config["llm"]["model"] == "gpt-4o-mini"
    assert config["llm"]["price_input_per_1k"] < paper["llm"]["price_input_per_1k"]
    assert config["llm"]["price_output_per_1k"] < paper["llm"]["price_output_per_1k"]
    assert config["llm"]["budget_usd"] == 0
    for stage in ("self_instruct", "translation", "ranking", "back_translation"):
        assert (config.get(stage, {}).get("llm") or {}).get("model") in (None, "gpt-4o-mini")
    # The paper's hyperparameters, lengths and schedules (as validated: defaults filled in).
    paper_validated = validate_config(merged_config("configs/paper.yaml"), load_schema())
    for section in ("split", "sft", "reward_model", "ppo", "dpo", "rlhf"):
        for key in paper[section]:
            assert config[section][key] == paper_validated[section][key], f"{section}.{key}"
    assert config["languages"] == paper["languages"]


def test_gpu_check_has_the_modern_shapes():
    from okapi_pipeline.gpu_check.shapes import SHAPES

    shapes = SHAPES["7b"]
    assert set(modern_config()["models"]) <= set(shapes)
    assert shapes["qwen2.5-7b"]["architecture"] == "qwen2" and shapes["llama-3.1-8b"]["vocab_size"] == 128256
    assert json.dumps(shapes)  # plain settings, as the stage specs carry them
