"""Pieces every training script of the package shares: checkpoint resolution, the CPU-FSDP guard, the step-driven
schedule callback, the weight moving average."""

import logging
import re
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from transformers import TrainerCallback, TrainingArguments

from ..modeling.schedules import StepScheduled

logger = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest checkpoint-* folder of `output_dir` that Trainer finished writing (it writes trainer_state.json
    last), or None. A run killed while saving leaves a newer, partial folder: it is skipped with a warning rather than
    resumed from (transformers' `get_last_checkpoint` would pick it)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = sorted((int(match.group(1)), path) for path in folder.iterdir()
                   if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name)))
    for _, path in reversed(steps):
        if (path / "trainer_state.json").is_file():
            return str(path)
        logger.warning("%s has no trainer_state.json (the run stopped while saving it): skipped.", path)
    return None


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` (or `true`) resumes from the newest checkpoint in output_dir; with none there
    yet (a first run, or one killed before its first save) the run starts fresh and says so, as transformers'
    example scripts do, so one command both starts and resumes a run. A named checkpoint folder must exist
    (FileNotFoundError otherwise)."""
    resume = training_args.resume_from_checkpoint
    if resume and resume.lower() in ("last", "true"):
        resume = last_complete_checkpoint(training_args.output_dir)
        if resume is None:
            logger.warning("--resume_from_checkpoint %s: no checkpoint-* folder in %s yet, so training starts from "
                           "the beginning.", training_args.resume_from_checkpoint, training_args.output_dir)
    elif resume and not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: no such checkpoint folder; pass a checkpoint-* "
                                "folder, or 'last' for the newest one in --output_dir.")
    return resume


def refuse_fsdp_on_cpu(training_args: TrainingArguments) -> None:
    """Accelerate enables FSDP for accelerators only and would silently run plain DDP on CPU: say so instead."""
    if training_args.fsdp and training_args.device.type == "cpu":
        raise ValueError(
            "FSDP through Trainer/Accelerate does not shard on CPU (Accelerate enables it for accelerators only and "
            "would silently run plain DDP). On GPUs use the FSDP config in the README; on CPU use data parallelism "
            "(torchrun without --fsdp), or torch's fully_shard directly as tests/fsdp2_worker.py does."
        )


class ScheduleStepCallback(TrainerCallback):
    """Feeds the Trainer's global step to models whose objective follows a schedule (the VAE's KL warm-up, the
    dVAE's temperature and β), through their `set_schedule_step`, before every update. After training the models
    go back to the end of their schedules. Resuming restores the step, so schedules resume where they stopped."""

    def on_step_begin(self, args, state, control, model: StepScheduled | None = None, **kwargs):
        model.set_schedule_step(state.global_step)

    def on_train_end(self, args, state, control, model: StepScheduled | None = None, **kwargs):
        model.set_schedule_step(None)


class EMACallback(TrainerCallback):
    """An exponential moving average of the weights (diffusers' `EMAModel`), updated after every optimizer step with
    the warm-up decay 1 − (1 + step)^−power capped at `decay`; diffusion models are sampled from it. It is saved into
    each checkpoint (`ema.pt`) and restored from `resume_from`, and copied into the model when training ends."""

    FILE_NAME = "ema.pt"

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, power: float = 3 / 4, resume_from: str | None = None):
        self.ema = EMAModel(model.parameters(), decay=decay, use_ema_warmup=True, power=power)
        if resume_from is not None:
            path = Path(resume_from) / self.FILE_NAME
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the checkpoint was not saved with a weight average.")
            self.ema.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.ema.to(model.device)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.step(model.parameters())

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            # Written aside and renamed: a run killed mid-write leaves no truncated ema.pt for a resume to trip on.
            partial = checkpoint / f"{self.FILE_NAME}.partial"
            torch.save(self.ema.state_dict(), partial)
            partial.replace(checkpoint / self.FILE_NAME)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.ema.copy_to(model.parameters())
