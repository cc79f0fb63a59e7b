"""Pieces every training script of the package shares: checkpoint resolution, the CPU-FSDP guard, the step-driven
schedule callback."""

from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` (or `true`) resumes from the newest checkpoint in output_dir."""
    resume = training_args.resume_from_checkpoint
    if resume and resume.lower() in ("last", "true"):
        resume = get_last_checkpoint(training_args.output_dir)
        if resume is None:
            raise ValueError(f"--resume_from_checkpoint last: no checkpoint-* folder in {training_args.output_dir}.")
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

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        model.set_schedule_step(state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.set_schedule_step(None)
