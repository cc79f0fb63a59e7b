"""Training recipes shared by the example scripts and the `hf-mmdl` command."""

from .common import EMACallback, ScheduleStepCallback

__all__ = ["EMACallback", "ScheduleStepCallback"]
