"""Text-to-image sampling with GLIDE and classifier-free guidance (GLIDE §2.3), as a diffusers `DiffusionPipeline`.

The loop is diffusers' `DDPMScheduler` with learned-range variance over GLIDE's respaced timesteps (the paper samples
with e.g. "100" steps or the upsampler's "fast27"); the model is fed the original timestep indices, as GLIDE does.
"""

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput
from transformers import PreTrainedTokenizerBase

from ..modeling.modeling_glide import GlideModel

OUTPUT_TYPES = ("pil", "np", "pt")


def respaced_timesteps(num_train_timesteps: int, spacing: str | int) -> list[int]:
    """GLIDE/iDDPM respacing, descending: `"100"` (100 evenly spaced steps), `"10,10,3,2,2"` (counts per equal
    segment of the schedule), or `"fast27"` (the upsampler's 27 steps: that split with step T−1 moved to T−3)."""
    spacing = str(spacing)
    counts = [10, 10, 3, 2, 2] if spacing == "fast27" else [int(c) for c in spacing.split(",")]
    size, extra = divmod(num_train_timesteps, len(counts))
    steps, start = set(), 0
    for i, count in enumerate(counts):
        segment = size + (1 if i < extra else 0)
        if count > segment or count < 1:
            raise ValueError(f"Cannot take {count} steps from a segment of {segment} timesteps (spacing {spacing!r}).")
        stride = 1 if count == 1 else (segment - 1) / (count - 1)
        steps.update(start + round(k * stride) for k in range(count))
        start += segment
    if spacing == "fast27":
        steps.remove(num_train_timesteps - 1)
        steps.add(num_train_timesteps - 3)
    return sorted(steps, reverse=True)


def guided_model_output(model_output: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """GLIDE §2.3 on a doubled batch [conditional; unconditional]: ε̂ = ε(∅) + s·(ε(c) − ε(∅)) on the ε channels
    only; the variance channels come from the conditional pass."""
    conditional, unconditional = model_output.chunk(2)
    eps = unconditional[:, :3] + guidance_scale * (conditional[:, :3] - unconditional[:, :3])
    return torch.cat([eps, conditional[:, 3:]], dim=1)


class GlidePipeline(DiffusionPipeline):
    """Text → image with a [`GlideModel`]: `pipe(prompt, guidance_scale=3.0, num_inference_steps="100")`.

    `guidance_scale` s: 1 samples the conditional model, 0 the unconditional one (empty caption), s > 1 guides
    towards the prompt; for s ≠ 1 the conditional and unconditional passes run as one doubled UNet batch.
    `negative_prompt` replaces the empty caption of the unconditional pass.
    """

    model_cpu_offload_seq = "glide"

    def __init__(self, glide: GlideModel, tokenizer: PreTrainedTokenizerBase, scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(glide=glide, tokenizer=tokenizer, scheduler=scheduler)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions → (input_ids, attention_mask) padded to the model's `text_ctx`; longer captions are cut there.
        The empty caption is all padding (mask 0), which the model replaces with its learned padding sequence."""
        text_ctx = self.glide.config.text_config.text_ctx
        ids = [self.tokenizer(p.lower(), add_special_tokens=False)["input_ids"][:text_ctx] if p else [] for p in prompts]
        pad = self.glide.config.text_config.pad_token_id
        input_ids = torch.tensor([row + [pad] * (text_ctx - len(row)) for row in ids])
        mask = torch.tensor([[1] * len(row) + [0] * (text_ctx - len(row)) for row in ids])
        return input_ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int | str = 100,
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("prompt is empty: pass a caption (or \"\" for an unconditional sample).")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        negatives = [""] * len(prompts) if negative_prompt is None else (
            [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt))
        if len(negatives) != len(prompts):
            raise ValueError(f"Got {len(prompts)} prompts but {len(negatives)} negative prompts.")
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = [n for n in negatives for _ in range(num_images_per_prompt)]
        guided = guidance_scale != 1.0
        input_ids, mask = self.tokenize(prompts + negatives if guided else prompts)
        text = self.glide.encode_text(input_ids, mask)

        size = self.glide.config.image_size
        sample = torch.randn((len(prompts), 3, size, size), generator=generator, device=self.device, dtype=self.glide.dtype)
        self.scheduler.set_timesteps(timesteps=respaced_timesteps(self.scheduler.config.num_train_timesteps, num_inference_steps), device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if guided else sample
            output = self.glide.denoise(model_input, t.expand(len(model_input)), input_ids, mask, text_outputs=text)
            output = guided_model_output(output, guidance_scale) if guided else output
            sample = self.scheduler.step(output, t, sample, generator=generator).prev_sample

        images = ((sample.float() + 1) / 2).clamp(0, 1)
        if output_type != "pt":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                images = [PIL.Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def glide_scheduler(model: GlideModel) -> DDPMScheduler:
    """The ancestral sampler GLIDE uses: its training schedule, learned-range variance, x₀ clipped to [-1, 1]."""
    return DDPMScheduler(
        num_train_timesteps=model.config.num_train_timesteps,
        beta_schedule=model.config.noise_schedule,
        variance_type="learned_range",
        clip_sample=True,
    )
