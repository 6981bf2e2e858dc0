"""Training progress with an ETA in the job log (transformers' own progress bar is off there)."""

import logging
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """A duration as H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLog(TrainerCallback):
    """Logs "step N/M (P%), elapsed, ETA" every `every_percent` of the run's steps.

    The ETA extrapolates from the steps this process has run: a resumed run counts from
    the step before its first one here (a resumed PPO run gets its step back from a
    callback that may run after this one), so the resumed steps do not make it look fast.
    """

    def __init__(self, every_percent: float = 5.0, clock=time.monotonic):
        self.every_percent = every_percent
        self.clock = clock
        self.started = None
        self.first_step = None
        self.next_report = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()
        self.first_step = None

    def _percent(self, step: int, state) -> float:
        return 100.0 * step / state.max_steps if state.max_steps else 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step is None:
            self.first_step = state.global_step - 1
            self.next_report = self._percent(self.first_step, state) + self.every_percent
        percent = self._percent(state.global_step, state)
        if state.global_step < state.max_steps and percent < self.next_report:
            return
        while self.next_report <= percent:
            self.next_report += self.every_percent
        elapsed = self.clock() - self.started
        done = state.global_step - self.first_step
        remaining = (state.max_steps - state.global_step) * elapsed / done if done else 0.0
        log.info(
            "step %d/%d (%.0f%%), elapsed %s, ETA %s",
            state.global_step,
            state.max_steps,
            percent,
            duration(elapsed),
            duration(remaining),
        )
