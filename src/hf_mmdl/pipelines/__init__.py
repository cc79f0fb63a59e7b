"""diffusers pipelines: thin sampling loops over diffusers schedulers."""

from .pipeline_glide import (
    GlideInpaintPipeline,
    GlidePipeline,
    GlideUpsamplePipeline,
    glide_fast_scheduler,
    glide_scheduler,
    respaced_timesteps,
)

__all__ = [
    "GlideInpaintPipeline",
    "GlidePipeline",
    "GlideUpsamplePipeline",
    "glide_fast_scheduler",
    "glide_scheduler",
    "respaced_timesteps",
]
