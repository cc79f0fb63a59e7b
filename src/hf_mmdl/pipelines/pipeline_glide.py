"""Sampling with GLIDE and classifier-free guidance (GLIDE §2.3) as diffusers `DiffusionPipeline`s: text → image,
text-guided inpainting (§4.3) and text-conditional upsampling.

The loop runs over GLIDE's respaced timesteps (the paper samples with e.g. "100" steps or the upsampler's "fast27");
the model is fed the original timestep indices, as GLIDE does. The scheduler is GLIDE's ancestral sampler
(`glide_scheduler`: diffusers' `DDPMScheduler` with learned-range variance) or, for few steps, the deterministic
DPM-Solver++ (`glide_fast_scheduler`); either is a pipeline component, swapped with `pipe.scheduler = ...`.

Every input and output goes through the `processor` component, a [`GlideProcessor`] (captions → token ids, images
→ pixels, edit masks → known-pixel masks, samples → images), which `save_pretrained` writes to `processor/` and
`from_pretrained` loads back (diffusers loads transformers `ProcessorMixin` components natively).
"""

import json
import os

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, ImagePipelineOutput
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from ..modeling.modeling_glide import GlideModel
from ..processing.image_processing_autoencoders import OUTPUT_TYPES
from ..processing.processing_glide import GlideProcessor


def respaced_timesteps(num_train_timesteps: int, spacing: str | int) -> list[int]:
    """GLIDE/iDDPM respacing, descending: `"100"` (100 evenly spaced steps), `"10,10,3,2,2"` (counts per equal
    segment of the schedule), or `"fast27"` (the upsampler's 27 steps: that split with step T−1 moved to T−3).
    Another type raises a `TypeError`; an unreadable string or more steps than a segment holds a `ValueError`."""
    if isinstance(spacing, bool) or not isinstance(spacing, (int, str)):
        raise TypeError(f"num_inference_steps must be an int or a respacing string such as \"100\", \"10,10,3,2,2\" or "
                        f"\"fast27\", got {type(spacing).__name__} {spacing!r}.")
    spacing = str(spacing)
    parts = spacing.split(",")
    if spacing != "fast27" and not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"num_inference_steps {spacing!r} is not a step count: pass an int (e.g. 100), comma-separated "
                         "counts per schedule segment (e.g. \"10,10,3,2,2\") or \"fast27\".")
    counts = [10, 10, 3, 2, 2] if spacing == "fast27" else [int(c) for c in parts]
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


def check_processor_fits(glide: GlideModel, processor: GlideProcessor) -> None:
    """Raise a ValueError unless `processor` prepares what `glide` reads: captions of its `text_ctx` tokens, images of
    its `image_size`, low-resolution inputs `upsample_factor` times smaller."""
    config, crop = glide.config, processor.image_processor.crop_size
    wanted = (config.text_config.text_ctx, (config.image_size, config.image_size), config.upsample_factor)
    got = (processor.text_ctx, (crop["height"], crop["width"]), processor.upsample_factor)
    if got != wanted:
        raise ValueError(f"The processor prepares (text_ctx, image size, upsample_factor) = {got} but the model reads "
                         f"{wanted}; build it with GlideProcessor.for_config(model.config, tokenizer).")


def guided_model_output(model_output: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """GLIDE §2.3 on a doubled batch [conditional; unconditional]: ε̂ = ε(∅) + s·(ε(c) − ε(∅)) on the ε channels
    only; the variance channels come from the conditional pass. The same holds for v, which is affine in ε for a
    given x_t."""
    conditional, unconditional = model_output.chunk(2)
    eps = unconditional[:, :3] + guidance_scale * (conditional[:, :3] - unconditional[:, :3])
    return torch.cat([eps, conditional[:, 3:]], dim=1)


class GlidePipeline(DiffusionPipeline):
    """Text → image with a [`GlideModel`]: `pipe(prompt, guidance_scale=3.0, num_inference_steps="100")`.

    `guidance_scale` s: 1 samples the conditional model, 0 the unconditional one (empty caption), s > 1 guides
    towards the prompt; for s ≠ 1 the conditional and unconditional passes run as one doubled UNet batch.
    `negative_prompt` replaces the empty caption of the unconditional pass. `processor` must fit the model
    (`GlideProcessor.for_config(glide.config, tokenizer)`), else construction raises a `ValueError`.

    As in diffusers pipelines, every variant takes `latents` (the initial noise x_T, float, shape (prompts ×
    num_images_per_prompt, 3, image_size, image_size)) and `callback_on_step_end(pipe, step, timestep,
    callback_kwargs)` with `callback_on_step_end_tensor_inputs=["latents"]`: the callback sees x_t after each step
    and may return a replacement under `"latents"`. `prompt=None`, `num_images_per_prompt` < 1 and an unreadable
    `num_inference_steps` raise a `ValueError` naming the argument.
    """

    model_cpu_offload_seq = "glide"
    # What `callback_on_step_end` may read and replace (diffusers' convention): the sampling state x_t.
    _callback_tensor_inputs = ["latents"]

    def __init__(self, glide: GlideModel, processor: GlideProcessor,
                 scheduler: DDPMScheduler | DPMSolverMultistepScheduler):
        super().__init__()
        check_processor_fits(glide, processor)
        self.register_modules(glide=glide, processor=processor, scheduler=scheduler)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' folder (model_index.json + one folder per component), plus a root `processor_config.json`
        naming the processor class: AutoProcessor looks only at the root, and `GlideProcessor.from_pretrained`
        then reads the `processor/` component. An existing file at `save_directory` raises a `FileExistsError`."""
        if os.path.isfile(save_directory):
            raise FileExistsError(f"Cannot save the pipeline to {save_directory}: it is an existing file. Pass a folder path.")
        super().save_pretrained(save_directory, *args, **kwargs)
        pointer = {"processor_class": type(self.processor).__name__}
        with open(os.path.join(save_directory, "processor_config.json"), "w") as file:
            json.dump(pointer, file, indent=2)

    def _captions(self, prompt, negative_prompt, num_images_per_prompt: int) -> tuple[list[str], list[str]]:
        if prompt is None:
            raise ValueError("prompt is required: pass a caption or a list of captions (\"\" for an unconditional sample).")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an int ≥ 1, got {num_images_per_prompt!r}.")
        if not isinstance(prompt, (str, list, tuple)):
            raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}.")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("prompt is empty: pass a caption (or \"\" for an unconditional sample).")
        negatives = [""] * len(prompts) if negative_prompt is None else (
            [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt))
        if len(negatives) != len(prompts):
            raise ValueError(f"Got {len(prompts)} prompts but {len(negatives)} negative prompts.")
        repeat = range(num_images_per_prompt)
        return [p for p in prompts for _ in repeat], [n for n in negatives for _ in repeat]

    def prepare(self, **inputs) -> dict[str, torch.Tensor]:
        """The processor's tensors for `inputs` (its `text` / `images` / `mask_images` / `low_res_images`), on the
        execution device; images and masks in the model's precision."""
        device = self._execution_device
        return {name: value.to(device) if name in ("input_ids", "attention_mask") else value.to(device, self.glide.dtype)
                for name, value in self.processor(**inputs).items()}

    def check_callback_inputs(self, callback_on_step_end, tensor_inputs):
        """diffusers' callback contract: `callback_on_step_end(pipe, step, timestep, callback_kwargs)` returns a dict
        (whose `"latents"`, if present, replaces x_t), or a `PipelineCallback`/`MultiPipelineCallbacks` that names its
        own `tensor_inputs`; only the names of `_callback_tensor_inputs` may be asked for. Returns the names to pass."""
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"callback_on_step_end must be callable, got {type(callback_on_step_end).__name__}.")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs may only name {self._callback_tensor_inputs}, got {unknown}.")
        return list(tensor_inputs)

    def initial_noise(self, batch: int, latents: torch.Tensor | None, generator, noise_scale: float) -> torch.Tensor:
        """x_T of shape (batch, 3, image_size, image_size), float32 on the execution device: `latents` when given
        (used as they are, as diffusers does; `noise_scale` applies to drawn noise only), else `noise_scale`·N(0, I).
        `latents` of another shape raise a `ValueError`, a non-tensor a `TypeError`."""
        size = self.glide.config.image_size
        shape = (batch, 3, size, size)
        device = self._execution_device
        if latents is None:
            # randn_tensor draws on the generator's device, so a CPU generator gives the same noise (and images) on
            # any device and in any precision.
            return noise_scale * randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError(f"latents must be a float tensor of shape {shape}, got "
                            f"{latents.dtype if isinstance(latents, torch.Tensor) else type(latents).__name__}.")
        if tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, but this call samples {shape}: (prompts × "
                             "num_images_per_prompt, 3, image_size, image_size).")
        return latents.to(device, torch.float32)

    def denoising_loop(self, prompts: list[str], negatives: list[str], num_inference_steps, guidance_scale: float,
                       generator, noise_scale: float = 1.0, latents: torch.Tensor | None = None,
                       callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",),
                       **conditions) -> torch.Tensor:
        """x_T → x_0 in [-1, 1]. `conditions` are the variant's inputs (`low_res`, `inpaint_image` + `inpaint_mask`,
        batch-aligned with `prompts`); with `inpaint_*` the known pixels are pasted into the predicted x₀ each step.
        `latents` is x_T (see `initial_noise`); `callback_on_step_end` runs after every step (see
        `check_callback_inputs`)."""
        if not (0 <= guidance_scale < float("inf")):
            raise ValueError(f"guidance_scale must be a finite number ≥ 0, got {guidance_scale}.")
        tensor_inputs = self.check_callback_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs)
        timesteps = respaced_timesteps(self.scheduler.config.num_train_timesteps, num_inference_steps)
        # The sampling state stays float32 whatever the model's precision: GLIDE's x₀ = (x_t − σε)/α at t ≈ T divides
        # by α ≈ 1e-4, which overflows float16.
        sample = self.initial_noise(len(prompts), latents, generator, noise_scale)
        guided = guidance_scale != 1.0
        captions = self.prepare(text=prompts + negatives if guided else prompts)
        input_ids, mask = captions["input_ids"], captions["attention_mask"]
        text = self.glide.encode_text(input_ids, mask)
        doubled = {k: torch.cat([v, v]) if guided else v for k, v in conditions.items()}

        device = self._execution_device
        model_dtype = self.glide.unet.conv_in.weight.dtype
        # Only the ancestral sampler reads the learned variance; DPM-Solver takes the prediction alone (diffusers
        # drops the variance channels itself for ε but not for v).
        reads_variance = isinstance(self.scheduler, DDPMScheduler)
        self.scheduler.set_timesteps(timesteps=timesteps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = (torch.cat([sample, sample]) if guided else sample).to(model_dtype)
            output = self.glide.denoise(model_input, t.expand(len(model_input)), input_ids, mask, text_outputs=text, **doubled).float()
            output = guided_model_output(output, guidance_scale) if guided else output
            if "inpaint_mask" in conditions:
                output = self.paste_known_pixels(output, sample, t, conditions["inpaint_image"].float(), conditions["inpaint_mask"].float())
            sample = self.scheduler.step(output if reads_variance else output[:, :3], t, sample, generator=generator).prev_sample
            if callback_on_step_end is not None:
                returned = callback_on_step_end(self, i, t, {name: sample for name in tensor_inputs})
                sample = returned.get("latents", sample) if isinstance(returned, dict) else sample
        return sample

    def paste_known_pixels(self, output: torch.Tensor, sample: torch.Tensor, t: torch.Tensor, image: torch.Tensor,
                           known: torch.Tensor) -> torch.Tensor:
        """Rewrite the prediction so that the predicted x₀ equals the given image where it is known (GLIDE's
        inpainting sampler replaces x₀ there at every step)."""
        diffusion, timesteps = self.glide.diffusion, t.reshape(1).expand(len(sample))
        x0 = known * image + (1 - known) * diffusion.predicted_x0(output[:, :3], sample, timesteps)
        return torch.cat([diffusion.prediction_for(x0, sample, timesteps), output[:, 3:]], dim=1)

    @staticmethod
    def check_output_type(output_type: str) -> None:
        """Refuse an unknown `output_type` before sampling rather than after it."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")

    def to_output(self, sample: torch.Tensor, output_type: str, return_dict: bool):
        """Post-process x₀ once, through the processor, and release offloaded models as diffusers pipelines do."""
        images = self.processor.postprocess(sample, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int | str = 100,
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] | list[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        self.check_output_type(output_type)
        if self.glide.config.inpaint or self.glide.config.super_res:
            raise ValueError("This GLIDE model is an inpainting or upsampling variant: use GlideInpaintPipeline or "
                             "GlideUpsamplePipeline.")
        prompts, negatives = self._captions(prompt, negative_prompt, num_images_per_prompt)
        sample = self.denoising_loop(prompts, negatives, num_inference_steps, guidance_scale, generator,
                                     latents=latents, callback_on_step_end=callback_on_step_end,
                                     callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        return self.to_output(sample, output_type, return_dict)


class GlideInpaintPipeline(GlidePipeline):
    """Text-guided editing (GLIDE §4.3) with an inpainting [`GlideModel`]: `image` + `mask_image` (white = the region
    to repaint, diffusers' convention; bool masks: True = repaint, 0/1 masks: 1 = repaint, as the processor reads
    them) + `prompt` → the edited image. Pixels outside the mask are kept exactly. Each mask must have its image's
    size and mark something to repaint; images and masks follow the processor's rules, which raise a `ValueError`
    naming the image or mask that breaks one (`GlideImageProcessor.preprocess_mask`)."""

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image,
        mask_image,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int | str = 100,
        guidance_scale: float = 5.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] | list[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        self.check_output_type(output_type)
        if not self.glide.config.inpaint:
            raise ValueError("GlideInpaintPipeline needs an inpainting GLIDE model (config.inpaint=True).")
        prompts, negatives = self._captions(prompt, negative_prompt, num_images_per_prompt)
        # Prepared together, so that the processor checks each mask against its image (count and size).
        edit = self.prepare(images=image, mask_images=mask_image)
        images, known = edit["pixel_values"], edit["inpaint_mask"]
        if len(images) not in (1, len(prompts) // num_images_per_prompt):
            raise ValueError(f"Got {len(images)} images for {len(prompts) // num_images_per_prompt} prompts.")
        repeats = len(prompts) // len(images)
        images, known = images.repeat_interleave(repeats, 0), known.repeat_interleave(repeats, 0)
        sample = self.denoising_loop(prompts, negatives, num_inference_steps, guidance_scale, generator,
                                     inpaint_image=images, inpaint_mask=known, latents=latents, callback_on_step_end=callback_on_step_end,
                                     callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        sample = torch.where(known.bool(), images.float(), sample)
        return self.to_output(sample, output_type, return_dict)


class GlideUpsamplePipeline(GlidePipeline):
    """Text-conditional super-resolution with an upsampling [`GlideModel`]: `image` (low resolution) + `prompt` →
    the image at the model's size. Defaults follow the released upsampler: "fast27" steps, no guidance, initial
    noise scaled by 0.997."""

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int | str = "fast27",
        guidance_scale: float = 1.0,
        noise_scale: float = 0.997,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] | list[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        self.check_output_type(output_type)
        if not self.glide.config.super_res:
            raise ValueError("GlideUpsamplePipeline needs an upsampling GLIDE model (config.super_res=True).")
        prompts, negatives = self._captions(prompt, negative_prompt, num_images_per_prompt)
        low_res = self.prepare(low_res_images=image)["low_res"]
        if len(low_res) not in (1, len(prompts) // num_images_per_prompt):
            raise ValueError(f"Got {len(low_res)} images for {len(prompts) // num_images_per_prompt} prompts.")
        low_res = low_res.repeat_interleave(len(prompts) // len(low_res), 0)
        sample = self.denoising_loop(prompts, negatives, num_inference_steps, guidance_scale, generator,
                                     noise_scale=noise_scale, low_res=low_res, latents=latents, callback_on_step_end=callback_on_step_end,
                                     callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        return self.to_output(sample, output_type, return_dict)


def glide_scheduler(model: GlideModel) -> DDPMScheduler:
    """The ancestral sampler GLIDE uses: its training schedule, learned-range variance, x₀ clipped to [-1, 1]."""
    return DDPMScheduler(
        num_train_timesteps=model.config.num_train_timesteps,
        beta_schedule=model.config.noise_schedule,
        variance_type="learned_range",
        prediction_type=model.config.prediction_type,
        clip_sample=True,
    )


def glide_fast_scheduler(model: GlideModel, solver_order: int = 2) -> DPMSolverMultistepScheduler:
    """A deterministic few-step sampler for GLIDE models: DPM-Solver++ (Lu et al. 2022) on the training schedule,
    reading ε (or v) and ignoring the learned variance, with x₀ kept in [-1, 1] by dynamic thresholding."""
    return DPMSolverMultistepScheduler(
        num_train_timesteps=model.config.num_train_timesteps,
        beta_schedule=model.config.noise_schedule,
        algorithm_type="dpmsolver++",
        solver_order=solver_order,
        variance_type="learned_range",
        prediction_type=model.config.prediction_type,
        thresholding=True,
        sample_max_value=1.0,
    )
