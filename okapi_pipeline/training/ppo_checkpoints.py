"""trl's PPO trainer made resumable and mixed-precision.

trl 1.12's PPO checkpoints hold the policy only and its train() always starts at
update 1, so a killed PPO run would start over. `ResumablePPOTrainer` writes and
resumes whole checkpoints as `checkpoint-N` folders holding a trainer_state.json, the
layout in which `trainer.prepare_checkpoints` finds every stage's checkpoints. It also
runs the loop under bf16 autocast where the run is bf16: trl builds its Accelerator
without mixed precision, so rollouts and training would otherwise compute in fp32.
"""

import json
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl.experimental.ppo import PPOTrainer
from trl.experimental.ppo.ppo_trainer import OnlineTrainerState

from okapi_pipeline.jsonl import write_json

CHECKPOINTS_KEPT = 2


class _SkipFirstBatches:
    """The dataloader, less the batches a resumed run already used in the current pass."""

    def __init__(self, dataloader, skip: int):
        self.dataloader = dataloader
        self.skip = skip

    def __iter__(self):
        batches = iter(self.dataloader)
        for _ in range(self.skip):
            next(batches)
        self.skip = 0
        yield from batches


class _RestoreProgress(TrainerCallback):
    """trl's train() zeroes the step and episode before `on_train_begin`: put them back."""

    def __init__(self, saved: OnlineTrainerState, max_steps: int):
        self.saved = saved
        self.max_steps = max_steps

    def on_train_begin(self, args, state, control, **kwargs):
        state.global_step = self.saved.global_step
        state.episode = self.saved.episode
        state.log_history = self.saved.log_history
        state.max_steps = self.max_steps


class ResumablePPOTrainer(PPOTrainer):
    """trl's PPOTrainer with checkpoints that a killed run resumes from.

    trl 1.12's checkpoints hold the policy only and its train() always starts at update
    1. Here a checkpoint is accelerate's whole state (policy and value model, optimizer,
    scheduler, random generators) plus the trainer state (step, episode, log history)
    and the KL coefficient. It is written under a temporary name and renamed when
    complete, so a kill during a save leaves the previous checkpoint usable. Resuming
    loads it and lets train() run only the remaining updates.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accelerator.register_for_checkpointing(self.lr_scheduler)

    def _save_checkpoint(self, model, trial):
        if self.state.global_step >= self.state.max_steps:
            return  # the final model is saved next: nothing is left to resume
        root = Path(self.args.output_dir)
        final = root / f"checkpoint-{self.state.global_step}"
        partial = root / f"partial-{final.name}"
        self.accelerator.save_state(str(partial))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.state.save_to_json(str(partial / "trainer_state.json"))
            write_json(partial / "ppo.json", {"kl_coef": self.args.kl_coef})
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            older = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for stale in older[:-CHECKPOINTS_KEPT]:
                shutil.rmtree(stale)
        self.accelerator.wait_for_everyone()

    def train(self, resume_from_checkpoint: str | None = None):
        if resume_from_checkpoint:
            checkpoint = Path(resume_from_checkpoint)
            self.accelerator.load_state(str(checkpoint))
            saved = OnlineTrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
            self.args.kl_coef = json.loads((checkpoint / "ppo.json").read_text())["kl_coef"]
            total = self.args.num_total_batches
            self.args.num_total_batches = total - saved.global_step
            self.dataloader = _SkipFirstBatches(self.dataloader, saved.global_step % len(self.dataloader))
            self.add_callback(_RestoreProgress(saved, total))
        # Rollouts, the reference, reward and value forwards and the policy's training forward
        # all run inside train(): one autocast computes them in bf16. The trained weights and
        # the optimizer stay fp32, as the original's DeepSpeed bf16 kept fp32 master weights.
        with torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            super().train()
