"""How a training job lays a model out on GPUs: how many, sharded how, in what micro-batches.

One memory model serves twice. At plan time the rules ask `gpus_for` how many GPUs of the
site's size (`site.gpu_memory_gb`) a job needs, from the model's parameter count alone. At
run time the trainer asks `batch_layout` for the micro-batch and whether to checkpoint
activations, from the model's own config and the memory of the GPU the job got. Neither
changes the recipe: the effective batch, and so the loss and the schedule, stay the
configured ones; gradient accumulation makes up the rest.

The model of memory (bytes, per GPU):
- model states: fp32 trained weights with bf16 autocast, fp32 gradients, AdamW's two fp32
  moments and the optimizer step's temporaries (18 B a trained parameter), frozen copies in
  bf16 (2 B); FSDP full sharding
  (SFT, reward model, DPO) divides all of it by the processes; DeepSpeed ZeRO-2 (PPO)
  keeps bf16 weights on every process and divides the fp32 master weights, moments and
  gradients of what trains.
- activations, per sequence of s tokens (bf16): about 40 s h a block without checkpointing
  (Korthikanti et al. 2022 count 34 s h for a GPT block; LLaMA's gated MLP keeps more), 2 s h
  a block with it plus one block recomputed; logits 12 s V where a language-model loss is
  taken (bf16 logits, their fp32 upcast, its gradient; 1.5 GB a 512-token sequence with
  BLOOM's 250K vocabulary).
- a fixed 1 GB for the CUDA context and kernels' workspaces; a tenth of the card is left
  for what the model misses (the allocator's fragmentation above all).
Set against the measured peaks of SFT with micro-batches of 2 x 512 tokens and checkpointing
(reference/gpu_measurements.csv; GB here are 2^30 bytes, as torch reports them): 7B LLaMA
113 measured, 114.8 modelled; 1B LLaMA 17.8 measured, 19.3 modelled.
"""

import math
from dataclasses import dataclass

GB = 2**30
# Of a card's memory, what the model may plan to fill: the rest absorbs what the model misses.
USABLE_SHARE = 0.9
FIXED_OVERHEAD = 1 * GB
# Per trained parameter beside its fp32 weight: fp32 gradient (4), AdamW's moments (8) and the
# optimizer step's temporaries (2; what the measured peaks hold beyond 16 B a parameter).
TRAINED_STATE_BYTES = 14
# Under ZeRO-2 in bf16: fp32 master weight, moments, bf16 gradient and temporaries.
ZERO2_TRAINED_STATE_BYTES = 16
ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH = 40  # a block's activations kept for backward, bf16
CHECKPOINT_BYTES_PER_TOKEN_AND_WIDTH = 2  # a block's input only, with checkpointing
LOGIT_BYTES = 12  # per token and vocabulary entry, where a language-model loss is taken
# Sequences a training example holds: a preference pair is a chosen and a rejected one.
SEQUENCES_PER_EXAMPLE = {"sft": 1, "reward_model": 2, "dpo": 2, "ppo": 1}
# Stages whose loss is over the vocabulary (the reward model has a one-logit head).
LANGUAGE_MODEL_LOSS = {"sft", "dpo", "ppo"}
# How the stages shard over several GPUs (accelerate/*.yaml, okapi_pipeline.training.launch).
SHARDING = {"sft": "fsdp", "reward_model": "fsdp", "dpo": "fsdp", "ppo": "zero2"}


@dataclass(frozen=True)
class Shape:
    """What memory depends on: parameters, width, depth and vocabulary."""

    parameters: float
    hidden_size: int
    num_layers: int
    vocab_size: int

    @classmethod
    def from_parameters(cls, parameters: float, vocab_size: int = 32000) -> "Shape":
        """A decoder of `parameters` of the usual proportions (12 h^2 per block, h / 128 blocks):
        LLaMA-7B's 4,096 x 32 from 6.7e9. For plans, where only the size is configured."""
        hidden = 128 * max(1, round((parameters * 128 / 12) ** (1 / 3) / 128))
        layers = max(1, round((parameters - vocab_size * hidden) / (12 * hidden**2)))
        return cls(parameters, hidden, layers, vocab_size)

    @classmethod
    def from_config(cls, config, parameters: float) -> "Shape":
        """From a transformers config and the parameter count of the model about to be
        trained (BLOOM's config maps hidden_size and num_hidden_layers to its own names)."""
        text = config.get_text_config()
        return cls(parameters, text.hidden_size, text.num_hidden_layers, text.vocab_size)

    @property
    def block_parameters(self) -> float:
        return max(0.0, self.parameters - self.vocab_size * self.hidden_size) / self.num_layers


def trained_parameters(stage: str, shape: Shape, settings: dict) -> float:
    """Parameters with gradients and optimizer state: all for SFT (LoRA: about none), the
    top blocks (and the embeddings unless frozen) elsewhere; PPO trains policy and value model."""
    if stage == "sft":
        return shape.parameters if settings["finetuning"] == "full" else 0.01 * shape.parameters
    top = settings["trainable_top_blocks"] * shape.block_parameters
    embeddings = 0 if settings["freeze_embeddings"] else shape.vocab_size * shape.hidden_size
    if stage == "ppo":
        return 2 * top + embeddings  # the value model's embeddings stay frozen
    return top + embeddings


def model_state_bytes(stage: str, shape: Shape, settings: dict, processes: int) -> float:
    """Weights, gradients and optimizer state on each of `processes` GPUs."""
    parameters, trained = shape.parameters, trained_parameters(stage, shape, settings)
    # Models held: DPO's reference beside the policy; PPO's value model, reference and reward model.
    copies = {"sft": 1, "reward_model": 1, "dpo": 2, "ppo": 4}[stage]
    if processes == 1 or SHARDING[stage] == "fsdp":
        # fp32 weights of what trains (PPO: policy and value model), bf16 frozen copies;
        # FSDP shards all of it.
        fp32_models = 2 if stage == "ppo" else 1
        weights = 4 * fp32_models * parameters + 2 * (copies - fp32_models) * parameters
        return (weights + TRAINED_STATE_BYTES * trained) / processes
    # ZeRO-2 in bf16: bf16 weights on every process; the rest of what trains sharded.
    return 2 * copies * parameters + ZERO2_TRAINED_STATE_BYTES * trained / processes


def activation_bytes(stage: str, shape: Shape, tokens: int, checkpointing: bool) -> float:
    """Activations kept for backward for `tokens` tokens of one micro-batch."""
    per_block = CHECKPOINT_BYTES_PER_TOKEN_AND_WIDTH if checkpointing else ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH
    blocks = tokens * shape.hidden_size * per_block * shape.num_layers
    if checkpointing:
        blocks += tokens * shape.hidden_size * ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH  # the block recomputed
    logits = LOGIT_BYTES * tokens * shape.vocab_size if stage in LANGUAGE_MODEL_LOSS else 0
    return blocks + logits


def gathered_unit_bytes(stage: str, shape: Shape, processes: int) -> float:
    """FSDP gathers a block's full bf16 weights to compute it, and prefetches the next."""
    return 2 * 2 * shape.block_parameters if processes > 1 and SHARDING[stage] == "fsdp" else 0


@dataclass(frozen=True)
class Layout:
    """How one process runs its share of an optimizer step."""

    micro_batch: int
    accumulation: int
    checkpointing: bool
    memory_gb: float  # the model's estimate of the peak on each GPU

    def describe(self) -> str:
        return (
            f"micro-batch {self.micro_batch} x {self.accumulation} accumulation steps, "
            f"checkpointing {'on' if self.checkpointing else 'off'}, about {self.memory_gb:.0f} GB a GPU"
        )


def generation_cache_bytes(stage: str, shape: Shape, settings: dict) -> float:
    """PPO's rollouts: the bf16 keys and values of `chunk_size` sequences generated at once
    (full multi-head attention; grouped-query models need less)."""
    if stage != "ppo":
        return 0
    return 2 * 2 * settings["chunk_size"] * sequence_length(stage, settings) * shape.num_layers * shape.hidden_size


def sequence_length(stage: str, settings: dict) -> int:
    """A training sequence's tokens at most: PPO's prompt and response, the others' max_length."""
    if stage == "ppo":
        return settings["max_prompt_length"] + settings["response_length"]
    return settings["max_length"]


def peak_bytes(stage, shape, settings, processes, micro_batch, checkpointing) -> float:
    """The modelled peak on each GPU."""
    tokens = micro_batch * SEQUENCES_PER_EXAMPLE[stage] * sequence_length(stage, settings)
    return (
        model_state_bytes(stage, shape, settings, processes)
        + gathered_unit_bytes(stage, shape, processes)
        + activation_bytes(stage, shape, tokens, checkpointing)
        + generation_cache_bytes(stage, shape, settings)
        + FIXED_OVERHEAD
    )


def batch_layout(stage: str, shape: Shape, settings: dict, processes: int, memory_bytes: float | None) -> Layout:
    """The micro-batch and checkpointing of SFT, reward model or DPO on `processes` GPUs of
    `memory_bytes` each (None: no GPU, memory is not the limit).

    `per_device_batch_size` and `gradient_checkpointing` are honoured when set; `auto`
    takes the largest micro-batch that divides each process's share of the effective
    batch and fits without checkpointing, else the largest that fits with it (checkpointing
    recomputes each block's forward: a third more compute, taken only where needed).
    """
    share, remainder = divmod(settings["effective_batch_size"], processes)
    if remainder:
        raise ValueError(f"effective batch {settings['effective_batch_size']} does not divide by {processes} processes")
    fixed, wanted = settings["per_device_batch_size"], settings["gradient_checkpointing"]
    sizes = [fixed] if fixed != "auto" else [m for m in range(share, 0, -1) if share % m == 0]
    if share % sizes[0]:
        raise ValueError(
            f"effective batch {settings['effective_batch_size']} is not a multiple of "
            f"{sizes[0]} per device x {processes} devices"
        )
    budget = math.inf if memory_bytes is None else USABLE_SHARE * memory_bytes
    options = [False, True] if wanted == "auto" else [wanted]
    if memory_bytes is None and wanted == "auto":
        options = [False]  # on the CPU checkpointing saves nothing worth its compute
    for checkpointing in options:
        for micro in sizes:
            peak = peak_bytes(stage, shape, settings, processes, micro, checkpointing)
            if peak <= budget:
                return Layout(micro, share // micro, checkpointing, peak / GB)
    # Nothing fits by the model: the smallest layout, and the model's estimate says by how much.
    micro, checkpointing = sizes[-1], options[-1]
    return Layout(
        micro, share // micro, checkpointing, peak_bytes(stage, shape, settings, processes, micro, checkpointing) / GB
    )


# ---- GPUs per job (plan time) ------------------------------------------------------------


def allowed_processes(stage: str, settings: dict, most: int) -> list[int]:
    """Process counts a stage's batches divide by, up to `most`: PPO's rollout batch and
    minibatch (the paper's 896 and 7: 1 or 7), the others' effective batch."""
    if stage == "ppo":
        sizes = (settings["rollout_batch_size"], settings["mini_batch_size"])
    else:
        sizes = (settings["effective_batch_size"],)
    return [n for n in range(1, most + 1) if all(size % n == 0 for size in sizes)]


def joint_gpus(stage: str, settings: dict, most: int) -> int:
    """The GPUs a joint job of `stage` asks for: the most, up to `most`, that its batches
    divide by (PPO's rollout and minibatch sizes; the others' effective batch)."""
    return allowed_processes(stage, settings, most)[-1]


def smallest_fit(stage: str, shape: Shape, settings: dict, memory_gb: float, most: int) -> tuple[int, float]:
    """(GPUs, modelled GB a GPU) of the fewest GPUs on which the stage fits with micro-batch 1
    and checkpointing; the most allowed (and its estimate) if none fits."""
    budget = USABLE_SHARE * memory_gb * GB
    for processes in allowed_processes(stage, settings, most):
        peak = peak_bytes(stage, shape, settings, processes, 1, True)
        if peak <= budget:
            break
    return processes, peak / GB


def gpus_for(stage: str, parameters: float, settings: dict, site: dict) -> int:
    """The GPUs a training job of `stage` on a model of `parameters` asks for: the fewest of
    the site's (`gpu_memory_gb`, `gpus_per_node`) that hold it."""
    shape = Shape.from_parameters(parameters)
    return smallest_fit(stage, shape, settings, site["gpu_memory_gb"], site["gpus_per_node"])[0]
