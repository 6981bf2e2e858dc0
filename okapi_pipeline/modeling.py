"""One loader for every model the pipeline runs: device, number format, tokenizer, pad token.

Training, the local LLM backend, response generation and evaluation all choose the
device and dtype with `run_precision` and load through `load_tokenizer` /
`load_causal_lm`. The same code loads a tiny local model (the demo) and a hub model
(the paper): a directory or a hub id goes through the Auto classes either way. The
freezing of lower blocks lives here too: it needs to know where an architecture keeps
its blocks.
"""

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Where the final layer norm sits in the architectures we know (Llama, BLOOM, GPT-2/NeoX...).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm")
BLOCK_LIST_NAMES = ("layers", "h", "blocks")


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
    """The model's tokenizer, with a pad token.

    LLaMA's has none. The rule is unk, else eos (lm-eval's rule too): an eos pad would
    be taken for padding where it ends a text, so a reward model would read its score
    before the final eos. Generation pads on the left (`padding_side="left"`).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_dir, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_dir, tokenizer, dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_scorer(name_or_dir, tokenizer, seed: int, dtype):
    """A one-logit sequence classifier (reward or value model).

    The seed is set first: loading from a causal LM adds a randomly initialised head.
    """
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1, dtype=dtype)
    # The score is read at the last non-pad token, so the model must know the pad id.
    model.config.pad_token_id = tokenizer.pad_token_id
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
    """The list of transformer blocks: `model.layers` (Llama), `transformer.h` (BLOOM), ..."""
    import torch

    backbone = model.base_model
    for name in BLOCK_LIST_NAMES:
        blocks = getattr(backbone, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ValueError(
        f"cannot find the transformer blocks of {type(model).__name__}: its backbone "
        f"{type(backbone).__name__} has none of the attributes {', '.join(BLOCK_LIST_NAMES)}"
    )


def final_norm(model):
    backbone = model.base_model
    for name in FINAL_NORM_NAMES:
        module = getattr(backbone, name, None)
        if module is not None:
            return module
    return None


def freeze_lower_blocks(model, k: int, freeze_embeddings: bool) -> int:
    """Freeze the transformer blocks below the top k; return the trainable parameter count.

    With `freeze_embeddings: False` that is all, as in the original reward model
    (`layers[:-k].requires_grad_(False)`) and trlx's PPO of mid-2023: the embeddings
    (and a tied output layer), the final norm and the head(s) still train. With True only
    the top k blocks, the final norm and the head(s) outside the backbone (`lm_head`,
    `score`) train; an output layer tied to the input embeddings (BLOOM) stays frozen.
    Either way every block below the top k stays bit-identical.
    """
    blocks = transformer_blocks(model)
    if not 0 < k <= len(blocks):
        raise ValueError(f"trainable_top_blocks={k}, but the model has {len(blocks)} blocks")
    model.requires_grad_(not freeze_embeddings)
    for index, block in enumerate(blocks):
        block.requires_grad_(index >= len(blocks) - k)
    norm = final_norm(model)
    if norm is not None:
        norm.requires_grad_(True)
    backbone_params = {id(p) for p in model.base_model.parameters()}
    for parameter in model.parameters():
        if id(parameter) not in backbone_params:
            parameter.requires_grad_(True)
    return trainable_parameters(model)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
