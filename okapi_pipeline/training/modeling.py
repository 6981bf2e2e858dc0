"""One loader for every model the pipeline runs: device, number format, tokenizer, pad token.

Training, the local LLM backend, response generation and evaluation all choose the
device and dtype with `run_precision` and load through `load_tokenizer` /
`load_causal_lm`. The same code loads a tiny local model (the demo) and a hub model
(the paper): a directory or a hub id goes through the Auto classes either way. The
freezing of lower blocks lives here too: it asks the model where its blocks are.
"""

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The device and number format of a run, chosen from the hardware at run time."""

    device: str
    bf16: bool

    @property
    def dtype(self):
        """For models that only run forward (reference, reward, generation, scoring)."""
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def dtype_name(self) -> str:
        """`dtype` as lm-eval's model_args spell it."""
        return "bfloat16" if self.bf16 else "float32"

    @property
    def train_dtype(self):
        """Trained weights stay fp32; bf16 is autocast (hub checkpoints would load as fp16)."""
        import torch

        return torch.float32

    def trainer_arguments(self) -> dict:
        """The matching TrainingArguments / trl config fields."""
        return {"use_cpu": self.device == "cpu", "bf16": self.bf16, "fp16": False}


def run_precision(threads: int | None = None) -> Precision:
    """bf16 on a CUDA device that supports it, else fp32 (on CPU with `threads` threads)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        return Precision("cuda", torch.cuda.is_bf16_supported())
    return Precision("cpu", False)


def load_tokenizer(name_or_dir, padding_side: str = "right"):
    """The model's tokenizer, with a pad token that is not its eos.

    A pad of its own is kept (BLOOM's <pad>, the demo's). Without one, or when it is the
    eos (Qwen2.5 ships pad = eos = <|endoftext|>; Llama-3.1 has no pad and no unk), the
    pad is the unk token (LLaMA), else a spare special token (`spare_special_token`:
    Llama-3.1's <|finetune_right_pad_id|>, Qwen2.5's <|vision_pad|>), else, logged, the
    eos. An eos pad hides the final eos wherever padding is found by the pad id: the
    reward model and trl's PPO would read the reward at the token before it, and PPO
    would leave the eos token's probability (the decision to stop) out of its loss and
    KL. The models' `config.pad_token_id` follows (`load_causal_lm`, `load_scorer`), and
    the trained models are saved with this tokenizer, so every later stage pads alike.
    Generation pads on the left (`padding_side="left"`).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_dir, padding_side=padding_side)
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token is None or tokenizer.pad_token_id == eos:
        unk = tokenizer.unk_token if tokenizer.unk_token_id not in (None, eos) else None
        pad = unk or spare_special_token(tokenizer, model_vocab_size(name_or_dir))
        if pad is None:
            tokenizer.pad_token = tokenizer.eos_token
            log.warning(
                "%s pads with its eos token %r (no unk and no spare special token): the reward "
                "is read before the final eos and PPO does not train the eos token",
                name_or_dir,
                tokenizer.eos_token,
            )
        else:
            tokenizer.pad_token = pad
            log.info("%s pads with %r (id %d)", name_or_dir, pad, tokenizer.pad_token_id)
    return tokenizer


def spare_special_token(tokenizer, vocab_size: int | None = None) -> str | None:
    """A special token that no text of the pipeline contains, to pad with; None if there is none.

    A special added token (never split, skipped when decoding) that is not bos, eos or unk,
    is not added by the tokenizer's post-processor, does not occur in its chat template
    (Llama-3.1's <|start_header_id|>, <|eot_id|>; Qwen2.5's <|im_start|>, <|im_end|>) and
    has a row in the model's embedding matrix (`vocab_size`, when known). One named for
    padding comes first (Llama-3.1's <|finetune_right_pad_id|>, Meta's pad for
    fine-tuning; Qwen2.5's <|vision_pad|>, unused by a text model), then the lowest id
    (a <|reserved_special_token_N|>).
    """
    template = tokenizer.chat_template or ""
    if isinstance(template, dict):
        template = "\n".join(template.values())
    named = {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token} - {None}
    added_by_post_processor = set(tokenizer("")["input_ids"])
    spare = [
        token.content
        for index, token in sorted(tokenizer.added_tokens_decoder.items())
        if token.special
        and token.content not in named
        and index not in added_by_post_processor
        and token.content not in template
        and (vocab_size is None or index < vocab_size)
    ]
    return next((token for token in spare if "pad" in token.lower()), spare[0] if spare else None)


def model_vocab_size(name_or_dir) -> int | None:
    """The embedding rows of a local model directory (its config.json), else None."""
    import json
    from pathlib import Path

    config = Path(name_or_dir) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    return data.get("vocab_size") or (data.get("text_config") or {}).get("vocab_size")


def check_pad_token(model, tokenizer) -> None:
    """Set the model's pad id to the tokenizer's; it must have a row in the embedding matrix."""
    rows = model.get_input_embeddings().num_embeddings
    if tokenizer.pad_token_id is None or not 0 <= tokenizer.pad_token_id < rows:
        raise ValueError(
            f"the pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}) is outside the "
            f"model's {rows} embedding rows"
        )
    model.config.pad_token_id = tokenizer.pad_token_id


def load_causal_lm(name_or_dir, tokenizer, dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=dtype)
    check_pad_token(model, tokenizer)
    return model


def load_scorer(name_or_dir, tokenizer, seed: int, dtype):
    """A one-logit sequence classifier (reward or value model).

    The seed is set first: loading from a causal LM adds a randomly initialised head.
    """
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1, dtype=dtype)
    # The score is read at the last non-pad token, so the model must know the pad id.
    check_pad_token(model, tokenizer)
    return model


def load_for_generation(name_or_dir, threads: int | None = None):
    """(tokenizer, model, precision) for generating or scoring text: a left-padding
    tokenizer and the causal LM on the run's device, in its dtype, in eval mode."""
    precision = run_precision(threads)
    tokenizer = load_tokenizer(name_or_dir, padding_side="left")
    model = load_causal_lm(name_or_dir, tokenizer, precision.dtype).to(precision.device).eval()
    return tokenizer, model, precision


# ---- freezing ---------------------------------------------------------------------------


def transformer_blocks(model):
    """The model's list of transformer blocks, found from the model itself.

    It is the ModuleList of the backbone whose modules all belong to a class of the model's
    `_no_split_modules`: the classes a device map never splits and accelerate's FSDP
    TRANSFORMER_BASED_WRAP wraps one by one (`model.layers` of LlamaDecoderLayer or
    Qwen2DecoderLayer, `transformer.h` of BloomBlock), so the blocks frozen here are the
    units FSDP shards.
    """
    import torch

    backbone = model.base_model
    block_classes = set(getattr(model, "_no_split_modules", None) or ())
    found = [
        module
        for module in backbone.modules()
        if isinstance(module, torch.nn.ModuleList)
        and len(module) > 0
        and all(type(block).__name__ in block_classes for block in module)
    ]
    if len(found) == 1:
        return found[0]
    raise ValueError(
        f"cannot find the transformer blocks of {type(model).__name__}: its backbone "
        f"{type(backbone).__name__} has {len(found)} lists of the block classes "
        f"{sorted(block_classes) or '(no _no_split_modules)'}, not one"
    )


def modules_after_blocks(model) -> list:
    """The backbone's modules with weights registered after its blocks: the final layer
    norm (`norm` of Llama and Qwen2, `ln_f` of BLOOM), whatever the architecture names it."""
    blocks = transformer_blocks(model)
    after, seen = [], False
    for child in model.base_model.children():
        if seen and next(child.parameters(), None) is not None:
            after.append(child)
        seen = seen or child is blocks
    return after


def freeze_lower_blocks(model, k: int, freeze_embeddings: bool) -> int:
    """Freeze the transformer blocks below the top k; return the trainable parameter count.

    With `freeze_embeddings: False` that is all, as in the original reward model
    (`layers[:-k].requires_grad_(False)`) and trlx's PPO of mid-2023: the embeddings
    (and a tied output layer), the final norm and the head(s) still train. With True only
    the top k blocks, the final norm and the head(s) outside the backbone (`lm_head`,
    `score`) train; an output layer tied to the input embeddings (BLOOM) stays frozen,
    an untied one (Llama, Qwen2.5-7B) trains.
    Either way every block below the top k stays bit-identical.
    """
    blocks = transformer_blocks(model)
    if not 0 < k <= len(blocks):
        raise ValueError(f"trainable_top_blocks={k}, but the model has {len(blocks)} blocks")
    model.requires_grad_(not freeze_embeddings)
    for index, block in enumerate(blocks):
        block.requires_grad_(index >= len(blocks) - k)
    for module in modules_after_blocks(model):
        module.requires_grad_(True)
    backbone_params = {id(p) for p in model.base_model.parameters()}
    for parameter in model.parameters():
        if id(parameter) not in backbone_params:
            parameter.requires_grad_(True)
    return trainable_parameters(model)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
