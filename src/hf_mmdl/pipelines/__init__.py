"""diffusers pipelines: thin sampling loops over diffusers schedulers."""

from .pipeline_glide import GlidePipeline, glide_scheduler, respaced_timesteps

__all__ = ["GlidePipeline", "glide_scheduler", "respaced_timesteps"]
