"""How fast the training stages run, without changing what they compute.

The recipe is the effective batch, the examples in each step and the loss. How a batch
lies in memory and which kernels compute it are not the recipe, and are chosen here at
run time, from the device, the model and the stage's `kernels` setting, and logged:

- Padding-free SFT batches (`padding_free_batches`): the micro-batch's examples are
  concatenated into one row with position ids that restart at each example, so no
  compute goes to padding. Only where attention keeps the examples apart: flash
  attention reads the restarts from the position ids; transformers' sdpa and eager masks
  do too (`masking_utils.find_packed_sequence_indices`, when no attention mask is given).
  Both need a model that takes position ids: BLOOM (ALiBi, no position ids) would let
  one example attend to another, so it keeps padded batches. Flash attention computes
  each example's own attention only; sdpa and eager compute the whole row's and mask
  it, so there a flattened batch is chosen only when it computes less than the padded
  one on the training data (`batch_flops`): with short examples next to long ones, not
  with examples all about max_length long.
- The optimizer kernel and Liger kernels (`speed_arguments`): the TrainingArguments
  fields that SFT, the reward model, DPO and PPO all take from here.
"""

import inspect
import logging
import random

log = logging.getLogger(__name__)

# Attention implementations that keep the examples of a flattened batch apart, given
# their position ids: flash attention (trl's list of variants) from the restarts;
# sdpa and eager from the mask transformers builds out of them.
FLASH_ATTENTION = frozenset(
    {
        "flash_attention_2",
        "flash_attention_3",
        "kernels-community/flash-attn2",
        "kernels-community/flash-attn3",
        "kernels-community/vllm-flash-attn3",
    }
)
PACKED_MASK_ATTENTION = frozenset({"sdpa", "eager"})
# A reward model's head is one logit: Liger's fused linear cross-entropy (a causal LM's
# forward, which its instance patch would put in place of the classifier's) must stay off.
LIGER_CONFIG = {"reward_model": {"fused_linear_cross_entropy": False}}


def padding_free(attention: str, takes_position_ids: bool) -> bool:
    """Whether a model with this attention implementation can train on flattened batches."""
    return takes_position_ids and attention in FLASH_ATTENTION | PACKED_MASK_ATTENTION


def batch_flops(lengths: list[int], micro_batch: int, token_flops: float, pair_flops: float) -> tuple[float, float]:
    """(padded, flattened): the FLOPs of training on examples of these lengths in micro-batches.

    A padded micro-batch computes as many tokens as its longest example times its size, a
    flattened one its examples' tokens; every token costs `token_flops` (6 x parameters)
    and attends to every token of its row, `pair_flops` a pair (sdpa and eager mask the
    row's scores, they do not skip them).
    """
    padded = flattened = 0.0
    for start in range(0, len(lengths), micro_batch):
        batch = lengths[start : start + micro_batch]
        width, total = max(batch), sum(batch)
        padded += len(batch) * width * (token_flops + pair_flops * width)
        flattened += total * (token_flops + pair_flops * total)
    return padded, flattened


def padding_free_batches(model, lengths: list[int], micro_batch: int) -> bool:
    """Padding-free SFT batches for this model and these example lengths, or padded ones (logged)."""
    attention = model.config._attn_implementation
    takes_position_ids = "position_ids" in inspect.signature(model.base_model.forward).parameters
    if not padding_free(attention, takes_position_ids):
        log.info("SFT batches: padded to the longest example (%s attention, no position ids)", attention)
        return False
    if attention in FLASH_ATTENTION:
        log.info("SFT batches: padding-free (%s)", attention)
        return True
    text = model.config.get_text_config()
    parameters = sum(p.numel() for p in model.parameters())
    # Forward and backward: 2 + 4 FLOPs a parameter and token; 4 a width and pair of
    # tokens in a layer's forward (scores, weighted sum), twice that backward.
    order = random.Random(0).sample(lengths, len(lengths))  # the trainer shuffles too
    padded, flattened = batch_flops(order, micro_batch, 6 * parameters, 12 * text.hidden_size * text.num_hidden_layers)
    chosen = flattened < padded
    log.info(
        "SFT batches: %s (%s attention; flattened batches would compute %.2f x the padded ones' FLOPs)",
        "padding-free" if chosen else "padded to the longest example",
        attention,
        flattened / padded,
    )
    return chosen


def kernel_arguments(
    stage: str, device: str, kernels: str, model_type: str | None, liger_types: frozenset | None
) -> dict:
    """The optimizer and Liger fields of a stage's trainer config.

    `kernels: plain`, or a CPU: PyTorch's plain AdamW and no Liger. `auto` on CUDA: the fused
    AdamW kernel (the same update in one kernel launch per step), and Liger's Triton
    kernels where `liger_types` (the model types the installed liger_kernel patches; None:
    not installed) allow: SFT and the reward model for a patched model type (BLOOM is not
    one: SFT keeps trl's chunked loss, which never holds the logits of the whole
    vocabulary); DPO for any model (trl's fused linear DPO loss, plus the patch where
    there is one). PPO takes only the optimizer: trl's PPOTrainer applies no Liger kernels.
    """
    cuda = kernels == "auto" and device == "cuda"
    arguments = {"optim": "adamw_torch_fused" if cuda else "adamw_torch"}
    if stage == "ppo":
        return arguments
    liger = (
        cuda
        and liger_types is not None
        and (stage == "dpo" or (stage in ("sft", "reward_model") and model_type in liger_types))
    )
    arguments["use_liger_kernel"] = liger
    if liger and stage in LIGER_CONFIG:
        arguments["liger_kernel_config"] = LIGER_CONFIG[stage]
    return arguments


def liger_model_types() -> frozenset | None:
    """The model types the installed liger_kernel patches; None when it is not installed
    (or older than trl needs). It needs Triton and a CUDA device."""
    from trl.import_utils import is_liger_kernel_available

    if not is_liger_kernel_available():
        return None
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return frozenset(MODEL_TYPE_TO_APPLY_LIGER_FN)


def speed_arguments(stage: str, precision, settings: dict, model=None) -> dict:
    """The kernel choices of `stage` (sft, reward_model, dpo, ppo) as trainer config fields.

    `model`: the model to be trained (its type decides Liger; PPO passes none).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    liger_types = liger_model_types() if precision.device == "cuda" and settings["kernels"] == "auto" else None
    arguments = kernel_arguments(stage, precision.device, settings["kernels"], model_type, liger_types)
    log.info(
        "%s kernels (%s): optimizer %s, Liger %s",
        stage,
        settings["kernels"],
        arguments["optim"],
        "on" if arguments.get("use_liger_kernel") else "off",
    )
    return arguments
