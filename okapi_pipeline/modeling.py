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
    """The model's tokenizer, with a pad token.

    A pad the tokenizer sets is kept (BLOOM's <pad>; Qwen2.5's, which is its eos). Without
    one the rule is unk (LLaMA), else eos (Llama-3 has neither), lm-eval's rule too. An eos
    pad is taken for padding where it ends a text: SFT and DPO still learn the final eos
    (trl masks their labels by length, not by pad id), but the reward model and trl's PPO
    read the reward at the token before it (both alike), and PPO leaves the eos token's
    probability out of its loss. Generation pads on the left (`padding_side="left"`).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_dir, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        log.info("%s pads with its eos token %r", name_or_dir, tokenizer.eos_token)
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
