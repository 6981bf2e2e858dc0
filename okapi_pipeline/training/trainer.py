"""The sequence every training stage runs, and what it is made of.

`run_trainer` is the one sequence: precision, checkpoints (resume or start afresh),
the stage's own trainer, training, saving (merged, gathered, written by the main
process), training_summary.json and the removal of the checkpoints. Each stage
(sft, reward_model, dpo, ppo) supplies only a `build` callable that loads its models
and returns a `Stage`.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okapi_pipeline.cluster.gpu_layout import Layout, Shape, batch_layout
from okapi_pipeline.jsonl import write_json
from okapi_pipeline.training.model_card import add_chat_template
from okapi_pipeline.training.modeling import Precision, run_precision, trainable_parameters
from okapi_pipeline.training.progress import ProgressLog

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """What a stage's `build(precision)` hands the sequence.

    trainer: a transformers/trl trainer whose `train(resume_from_checkpoint=...)` resumes.
    tokenizer: saved beside the model.
    trainable: trainable parameters (None: counted on `trainer.model`, before any LoRA merge).
    summary: the stage's own training_summary.json fields, from the trained trainer;
        called on every process before saving (it may evaluate the model).
    save: (trainer, out_dir, tokenizer) -> the model as saved; every process calls it
        (None: `save_trained_model`).
    loss_key: the log-history entry that is the summary's loss curve.
    """

    trainer: Any
    tokenizer: Any
    trainable: int | None = None
    summary: Callable[[Any], dict] = lambda trainer: {}
    save: Callable | None = None
    loss_key: str = "loss"


def run_trainer(
    stage: str,
    build: Callable[[Precision], Stage],
    *,
    inputs: tuple,
    out_dir,
    settings: dict,
    checkpoint_dir,
    threads: int = 1,
) -> dict | None:
    """Run one training stage; return its summary (None on the processes other than the main one).

    `inputs` (model directories, data files) and `settings` fingerprint the run: the
    checkpoints of a run with other inputs or settings are dropped, those of this run
    resumed.
    """
    started = time.time()
    precision = run_precision(threads)
    # Where the logs go is no part of the run: changing it keeps the checkpoints.
    recipe = {key: value for key, value in settings.items() if key != "report_to"}
    resume = prepare_checkpoints(checkpoint_dir, fingerprint(*inputs, recipe))
    built = build(precision)
    trainer = built.trainer
    trainable = trainable_parameters(trainer.model) if built.trainable is None else built.trainable
    trainer.add_callback(ProgressLog())
    trainer.train(resume_from_checkpoint=resume)
    extra = built.summary(trainer)
    model = (built.save or save_trained_model)(trainer, out_dir, built.tokenizer)
    if not is_main_process():
        return None
    summary = write_training_summary(
        out_dir,
        stage=stage,
        log_history=trainer.state.log_history,
        steps=trainer.state.global_step,
        started=started,
        model=model,
        trainable=trainable,
        settings=settings,
        precision=precision,
        extra={**extra, "resumed_from_step": checkpoint_step(resume), "batch_layout": batch_layout_of(trainer.args)},
        loss_key=built.loss_key,
    )
    event_files = Path(checkpoint_dir) / "runs"
    if event_files.is_dir():  # TensorBoard's (report_to): they outlive the checkpoints, beside the model
        shutil.move(event_files, Path(out_dir) / "runs")
    clear_checkpoints(checkpoint_dir)
    return summary


# ---- trainer arguments -------------------------------------------------------------------


def batch_layout_of(args) -> dict:
    """How the run laid out its batches (for the summary): per process, and processes.
    trl's PPO computes each minibatch at once (its per-device batch is the rollouts)."""
    return {
        "micro_batch": getattr(args, "local_mini_batch_size", args.per_device_train_batch_size),
        "accumulation": args.gradient_accumulation_steps,
        "checkpointing": bool(args.gradient_checkpointing),
        "processes": world_size(),
    }


def training_layout(stage: str, model, settings: dict, precision: Precision) -> Layout:
    """This process's micro-batch, gradient accumulation and checkpointing, for the GPU it
    runs on (okapi_pipeline.cluster.gpu_layout): the effective batch is the recipe's whatever the
    device; on the CPU memory is not the limit."""
    import torch

    memory = None
    if precision.device == "cuda":
        memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    shape = Shape.from_config(model.config, parameters=sum(p.numel() for p in model.parameters()))
    layout = batch_layout(stage, shape, settings, world_size(), memory)
    log.info("%s on %d process(es): %s", stage, world_size(), layout.describe())
    return layout


def trainer_arguments(settings: dict, checkpoint_dir, precision: Precision, evaluate: bool, layout: Layout) -> dict:
    """The TrainingArguments fields SFT, the reward model and DPO share, from a stage's settings.

    Gradient accumulation makes up `effective_batch_size` over however many processes
    run and the micro-batch `layout` chose, so the schedule is the same on one CPU or
    eight GPUs.
    """
    return dict(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_length=settings["max_length"],
        per_device_train_batch_size=layout.micro_batch,
        per_device_eval_batch_size=layout.micro_batch,
        gradient_accumulation_steps=layout.accumulation,
        gradient_checkpointing=layout.checkpointing,
        # Reentrant checkpointing drops the gradients of blocks whose inputs need none (frozen embeddings).
        gradient_checkpointing_kwargs={"use_reentrant": False},
        seed=settings["seed"],
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="steps",
        save_steps=settings["save_steps"],
        save_total_limit=2,
        logging_steps=1,
        report_to=settings["report_to"],
        disable_tqdm=True,
        **precision.trainer_arguments(),
    )


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
        add_chat_template(tokenizer)
        tokenizer.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
    return model


def clear_checkpoints(checkpoint_dir) -> None:
    """The output is saved: the checkpoints are no longer needed."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


# ---- summaries -----------------------------------------------------------------------


def loss_curve(log_history: list[dict], key: str = "loss", name: str | None = None) -> list[dict]:
    """[{"step": ..., name: ...}] for the log entries that hold `key` (name defaults to key)."""
    return [{"step": entry["step"], name or key: entry[key]} for entry in log_history if key in entry]


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
    loss_key: str = "loss",
) -> dict:
    """training_summary.json: steps, loss over time, wall time, trainable parameters, settings.

    `trainable` is counted before any LoRA merge, `model` is the model as saved; the
    loss curve is read from `loss_key` in the log history.
    """
    summary = {
        "stage": stage,
        "steps": steps,
        "loss": loss_curve(log_history, loss_key, "loss"),
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
