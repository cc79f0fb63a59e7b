"""Training-step schedules that objectives follow, and the protocol through which the Trainer drives them.

A schedule here is a pure function of the optimizer step, so it resumes exactly from a checkpoint's step and needs no
state of its own. Models whose objective follows one (the VAE's KL warm-up, the dVAE's gumbel-softmax τ and KL weight
β; later, e.g., data2vec's EMA-teacher decay) implement [`StepScheduled`]; `hf_mmdl.training.ScheduleStepCallback`
feeds them the Trainer's global step before every update.
"""

import math
from typing import Protocol, runtime_checkable


@runtime_checkable
class StepScheduled(Protocol):
    """An object whose objective follows a schedule driven by the training step.

    `set_schedule_step(step)` is called before every update with the number of optimizer updates done so far (the
    Trainer's `global_step`: 0 before the first one); the object reads its scheduled values (a weight, a temperature,
    a decay) from that step alone. `set_schedule_step(None)` means "past the end of training": every schedule at its
    final value, which is what inference and evaluation outside the Trainer see.
    """

    def set_schedule_step(self, step: int | None) -> None: ...


def cosine_ramp(step: int, total_steps: int, start: float, end: float) -> float:
    """v(t) = end + (start − end)·(1 + cos(π·min(t/T, 1)))/2: start at t = 0, end from t = T on (T = 0: end)."""
    if total_steps <= 0:
        return end
    progress = min(max(step, 0) / total_steps, 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2
