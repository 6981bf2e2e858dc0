"""What the training stages share: device and precision, loading, freezing, summaries.

The same code loads a tiny local model (the demo) and a hub model (the paper): a
directory or a hub id goes through the Auto classes either way.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from okapi_pipeline.jsonl import write_json

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
        """For models that only run forward (reference, reward)."""
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def train_dtype(self):
        """Trained weights stay fp32; bf16 is autocast (hub checkpoints would load as fp16)."""
        import torch

        return torch.float32

    def trainer_arguments(self) -> dict:
        """The matching TrainingArguments / trl config fields."""
        return {"use_cpu": self.device == "cpu", "bf16": self.bf16, "fp16": False}


def trainer_arguments(settings: dict, checkpoint_dir, precision: Precision, evaluate: bool) -> dict:
    """The TrainingArguments fields SFT, the reward model and DPO share, from a stage's settings.

    Gradient accumulation makes up `effective_batch_size` over however many processes
    run, so the schedule is the same on one CPU or eight GPUs.
    """
    return dict(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_length=settings["max_length"],
        per_device_train_batch_size=settings["per_device_batch_size"],
        per_device_eval_batch_size=settings["per_device_batch_size"],
        gradient_accumulation_steps=gradient_accumulation(
            settings["effective_batch_size"], settings["per_device_batch_size"], world_size()),
        seed=settings["seed"],
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="steps",
        save_steps=settings["save_steps"],
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        **precision.trainer_arguments(),
    )


def run_precision(threads: int | None = None) -> Precision:
    """bf16 on a CUDA device that supports it, else fp32 (on CPU with `threads` threads)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        return Precision("cuda", torch.cuda.is_bf16_supported())
    return Precision("cpu", False)


def load_tokenizer(name_or_dir, padding_side: str = "right"):
    """The model's tokenizer, with a pad token (LLaMA's has none: use unk, else eos)."""
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


def gradient_accumulation(effective_batch_size: int, per_device_batch_size: int, world_size: int = 1) -> int:
    """Accumulation steps that keep the effective batch whatever the number of devices."""
    per_step = per_device_batch_size * world_size
    if effective_batch_size % per_step:
        raise ValueError(
            f"effective batch {effective_batch_size} is not a multiple of "
            f"{per_device_batch_size} per device x {world_size} devices")
    return effective_batch_size // per_step


def world_size() -> int:
    """Processes in this run (`accelerate launch` sets WORLD_SIZE; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The process that writes shared files (the only one outside `accelerate launch`)."""
    return int(os.environ.get("RANK", "0")) == 0


# ---- checkpoints ---------------------------------------------------------------------


def fingerprint(*parts) -> str:
    """A hash of what a run depends on (settings, input files), to tell stale checkpoints."""
    digest = hashlib.sha256()
    for part in parts:
        path = Path(part) if isinstance(part, (str, Path)) else None
        if path is not None and path.is_file():
            digest.update(path.read_bytes())
        elif path is not None and path.is_dir():
            # A model directory: names, sizes and times (reading gigabytes of weights is slow).
            for file in sorted(path.rglob("*")):
                stat = file.stat()
                digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def prepare_checkpoints(checkpoint_dir, run_fingerprint: str) -> str | None:
    """The checkpoint to resume from, or None.

    Checkpoints of a run with other settings or inputs are removed: a rerun after a
    config change must start afresh, not continue the old run. A checkpoint is complete
    once its trainer_state.json exists (the trainers write it last); one cut short by a
    kill is skipped. Under `accelerate launch` the main process looks first, so that
    the others find the checkpoint directory as it left it.
    """
    from accelerate import PartialState

    checkpoint_dir = Path(checkpoint_dir)
    stamp = checkpoint_dir / "fingerprint.txt"
    with PartialState().main_process_first():
        if checkpoint_dir.exists() and (not stamp.exists() or stamp.read_text() != run_fingerprint):
            log.info("removing checkpoints of another run in %s", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            stamp.write_text(run_fingerprint)
    checkpoints = sorted(
        (path for path in checkpoint_dir.glob("checkpoint-*") if (path / "trainer_state.json").exists()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    if checkpoints:
        log.info("resuming from %s", checkpoints[-1])
        return str(checkpoints[-1])
    return None


def checkpoint_step(checkpoint: str | None) -> int:
    """The step a run resumes from (0: it starts afresh)."""
    return int(Path(checkpoint).name.split("-")[1]) if checkpoint else 0


def save_trained_model(trainer, out_dir, tokenizer):
    """Save the trained model (LoRA merged) and tokenizer; return the model as saved.

    Every process calls this: under FSDP the full weights are gathered from the shards
    first; the main process writes. LoRA runs unsharded (DDP), so each process merges
    its own copy.
    """
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    state_dict = None
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    elif accelerator.num_processes > 1:
        state_dict = accelerator.get_state_dict(trainer.model)
    if accelerator.is_main_process:
        model.save_pretrained(out_dir, state_dict=state_dict)
        tokenizer.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
    return model


def clear_checkpoints(checkpoint_dir) -> None:
    """The output is saved: the checkpoints are no longer needed."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


# ---- summaries -----------------------------------------------------------------------


def loss_curve(log_history: list[dict], key: str = "loss") -> list[dict]:
    return [{"step": entry["step"], key: entry[key]} for entry in log_history if key in entry]


def write_training_summary(
    out_dir,
    *,
    stage: str,
    log_history: list[dict],
    steps: int,
    started: float,
    model,
    trainable: int,
    settings: dict,
    precision: Precision,
    extra: dict | None = None,
) -> dict:
    """training_summary.json: steps, loss over time, wall time, trainable parameters, settings.

    `trainable` is counted before any LoRA merge, `model` is the model as saved.
    """
    summary = {
        "stage": stage,
        "steps": steps,
        "loss": loss_curve(log_history),
        "eval_loss": loss_curve(log_history, "eval_loss"),
        "wall_time_s": round(time.time() - started, 2),
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "device": precision.device,
        "bf16": precision.bf16,
        "settings": settings,
        **(extra or {}),
    }
    write_json(Path(out_dir) / "training_summary.json", summary)
    return summary


# ---- base models from the hub ---------------------------------------------------------

# Formats other than PyTorch weights: never needed here, often many gigabytes.
FOREIGN_WEIGHTS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.gguf", "*.tflite"]


def fetch_base_model(hub_id: str, revision: str, out_dir) -> None:
    """Download a hub model into out_dir (safetensors only when the repo has them)."""
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(hub_id, revision=revision)
    ignore = list(FOREIGN_WEIGHTS)
    if any(name.endswith(".safetensors") for name in files):
        ignore += ["*.bin", "*.pt", "*.pth"]
    log.info("downloading %s@%s into %s (skipping %s)", hub_id, revision, out_dir, ", ".join(ignore))
    snapshot_download(hub_id, revision=revision, local_dir=out_dir, ignore_patterns=ignore)
