"""Gradio demo of GLIDE (Nichol et al., ICML 2022): write a caption and sample images from it with classifier-free
guidance; with an inpainting pipeline also paint over part of an image and have it repainted as a prompt says.

Like the autoencoder demo, images are shown enlarged by a whole factor with NEAREST resampling and sent as PNG files
of their own (`image_file`), so the small (32×32 or 64×64) samples keep their hard pixel edges and concurrent requests
never share a file.
"""

from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageColor
import PIL.ImageDraw
import torch
from diffusers import DiffusionPipeline

from ..data.text_to_image import POSITIONS, render_prompt_scene, scene_caption
from ..pipelines import GlideInpaintPipeline, GlidePipeline, glide_fast_scheduler, glide_scheduler, respaced_timesteps
from . import DELETE_CACHE, checked_seed, image_file, shown_to_user, upscale
from .autoencoders import tile_images

SAMPLERS = {"ancestral": glide_scheduler, "fast": glide_fast_scheduler}
SAMPLER_CHOICES = [("ancestral (GLIDE's DDPM sampler)", "ancestral"), ("fast deterministic (DPM-Solver++)", "fast")]
STEP_CHOICES = ["25", "50", "100"]
EDITOR_SIDE = 256  # the example image is enlarged to about this side so that it is easy to paint on
BRUSH_COLOUR, BRUSH_OPACITY = "#ffffff", 0.6  # translucent white: the image stays visible under the mask
# Captions of the built-in scenes that `hf-mmdl text-to-image` trains on; any caption works with released GLIDE.
EXAMPLE_PROMPTS = [scene_caption(*p) for p in (("circle", "red", "top left"), ("square", "blue", "bottom right"),
                                                ("triangle", "green", "top right"))]
EXAMPLE_SCENE = ("circle", "red", "top left")  # the Edit tab's opening image
EXAMPLE_EDIT_PROMPT = scene_caption("square", "yellow", "top left")


def check_pipeline(path: str, pipeline_class: type[GlidePipeline]) -> None:
    """Refuse a folder (or Hub id) that was not saved from `pipeline_class`, reading only its model_index.json, so
    that a folder of another architecture fails with a clear message before any weights load."""
    try:
        name = DiffusionPipeline.load_config(path)["_class_name"]
    except OSError as error:
        raise ValueError(f"{path} holds no diffusers pipeline (no model_index.json); this demo runs GLIDE pipelines "
                         "saved with GlidePipeline.save_pretrained.") from error
    if name != pipeline_class.__name__:
        raise ValueError(f"{path} holds a {name!r}; this demo needs a {pipeline_class.__name__!r} there "
                         "(text-to-image in the model folder, inpainting in its inpaint/ subfolder).")


def one_pipeline_per_sampler(pipe: GlidePipeline) -> dict[str, GlidePipeline]:
    """The pipeline once per sampler, all sharing the model and processor: each request picks its sampler without
    swapping the scheduler of a pipeline that another request may be sampling with."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    glide = pipe.glide.to(device).eval()
    return {name: type(pipe)(glide=glide, processor=pipe.processor, scheduler=make(glide))
            for name, make in SAMPLERS.items()}


def mask_from_layers(layers: list[PIL.Image.Image], size: tuple[int, int]) -> PIL.Image.Image:
    """The image editor's layers → an "L" mask of the image's `size`, white (repaint) wherever a layer is painted.

    Brush strokes are the visible pixels of a transparent layer, whatever their colour. A layer with no transparent
    pixel cannot hold strokes; it is read as a black-and-white mask with white = repaint (diffusers' convention), so
    API clients can send a mask they already have."""
    painted = np.zeros(size[::-1], dtype=bool)
    for layer in layers:
        if layer.size != size:
            raise ValueError(f"A mask layer is {layer.width}×{layer.height} but the image is {size[0]}×{size[1]}; "
                             "paint the mask over the image itself.")
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        painted |= np.asarray(layer.convert("L")) >= 128 if alpha.min() == 255 else alpha > 0
    if not painted.any():
        raise ValueError("No mask painted: paint over the part of the image to repaint with the brush.")
    return PIL.Image.fromarray(painted.astype(np.uint8) * 255, mode="L")


def example_edit(image_size: int) -> dict:
    """The Edit tab's opening value: a scene from the training distribution, enlarged, with its object's quadrant
    already painted over, so that clicking Edit shows an edit straight away."""
    shape, colour, position = EXAMPLE_SCENE
    image = upscale(render_prompt_scene(shape, colour, position, image_size), EDITOR_SIDE)
    layer = PIL.Image.new("RGBA", image.size, (0, 0, 0, 0))
    cx, cy = (round(f * image.width) for f in POSITIONS[position])
    half = image.width // 4
    stroke = (*PIL.ImageColor.getrgb(BRUSH_COLOUR), round(255 * BRUSH_OPACITY))
    PIL.ImageDraw.Draw(layer).rectangle((cx - half, cy - half, cx + half - 1, cy + half - 1), fill=stroke)
    composite = PIL.Image.alpha_composite(image.convert("RGBA"), layer)
    return {"background": image, "layers": [layer], "composite": composite}


class Glide:
    """A loaded GLIDE text-to-image pipeline, and optionally an inpainting one, with what the demo shows for each."""

    def __init__(self, model_path: str, inpaint_path: str | None = None):
        if inpaint_path is None and (Path(model_path) / "inpaint" / "model_index.json").is_file():
            inpaint_path = str(Path(model_path) / "inpaint")
        # Both folders are checked before either loads its weights.
        check_pipeline(model_path, GlidePipeline)
        if inpaint_path is not None:
            check_pipeline(inpaint_path, GlideInpaintPipeline)
        self.generators = one_pipeline_per_sampler(GlidePipeline.from_pretrained(model_path))
        self.editors = None
        if inpaint_path is not None:
            self.editors = one_pipeline_per_sampler(GlideInpaintPipeline.from_pretrained(inpaint_path))
        self.inpaint_path = inpaint_path

    @property
    def edit_image_size(self) -> int:
        return self.editors["ancestral"].glide.config.image_size

    @staticmethod
    def pick(pipelines: dict[str, GlidePipeline], sampler: str, steps: str) -> GlidePipeline:
        """The pipeline of `sampler`, once `steps` is known to be a respacing of its schedule: a bad value is named
        with what would be accepted, before any sampling."""
        if sampler not in pipelines:
            raise ValueError(f"Unknown sampler {sampler!r}; choose one of {sorted(pipelines)}.")
        pipe = pipelines[sampler]
        num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        try:
            respaced_timesteps(num_train_timesteps, steps)
        except ValueError as error:
            raise ValueError(f"Steps {steps!r} is not a respacing of the model's {num_train_timesteps} timesteps: give a "
                             f"count such as 50, or counts per equal segment such as 10,10,3,2,2 ({error}).") from error
        return pipe

    def generate(self, prompt: str, negative_prompt: str, guidance_scale: float, steps: str, sampler: str, seed: int,
                 num_images: int) -> PIL.Image.Image:
        """A grid of `num_images` samples for `prompt`; the same seed and settings give the same images."""
        pipe = self.pick(self.generators, sampler, steps)
        generator = torch.Generator(pipe.device).manual_seed(int(seed))
        images = pipe(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps,
                      guidance_scale=float(guidance_scale), num_images_per_prompt=int(num_images),
                      generator=generator).images
        return tile_images(images, columns=min(int(num_images), 4))

    def edit(self, image: PIL.Image.Image, mask: PIL.Image.Image, prompt: str, guidance_scale: float, steps: str,
             sampler: str, seed: int) -> PIL.Image.Image:
        """Image (as the model sees it) | region to repaint | edit, side by side; outside the region the edit is the
        image, pixel for pixel."""
        pipe = self.pick(self.editors, sampler, steps)
        # The processor refuses a mask that covers none of the model's pixels once resized to them.
        repaint = pipe.processor(mask_images=mask)["inpaint_mask"] == 0
        source = pipe.processor.postprocess(pipe.processor(images=image)["pixel_values"])[0]
        shown_mask = PIL.Image.fromarray(repaint[0, 0].numpy().astype(np.uint8) * 255, mode="L")
        generator = torch.Generator(pipe.device).manual_seed(int(seed))
        edited = pipe(prompt, image=image, mask_image=mask, num_inference_steps=steps, guidance_scale=float(guidance_scale),
                      generator=generator).images[0]
        return tile_images([source, shown_mask, edited], columns=3)


def build_demo(model_path: str, inpaint_path: str | None = None):
    """The Blocks app, queued. Its `api_name`s ("generate"; with an inpainting pipeline also "edit") are the endpoints
    gradio_client calls. The inpainting pipeline is `inpaint_path`, else the `inpaint/` subfolder of `model_path`
    when it holds one (where `hf-mmdl text-to-image` saves it); without one the Edit tab is left out."""
    import gradio as gr

    from .widgets import ImageEditorInput, image_output, queued, seed_input

    glide = Glide(model_path, inpaint_path)

    # The pipelines' tqdm step bars drive the app's progress bar: 100 steps of a large model take a while on a CPU.
    track_steps = gr.Progress(track_tqdm=True)

    def check_prompt_and_seed(prompt, seed, missing_prompt) -> int:
        if not prompt or not prompt.strip():
            raise gr.Error(missing_prompt)
        return checked_seed(seed)

    def generate(prompt, negative_prompt, guidance_scale, steps, sampler, seed, num_images, progress=track_steps):
        seed = check_prompt_and_seed(prompt, seed, "Write a prompt first (for an unconditional sample, keep any prompt "
                                                   "and set guidance to 0).")
        with shown_to_user():
            return image_file(glide.generate(prompt, negative_prompt, guidance_scale, steps, sampler, seed, num_images))

    def edit(editor, prompt, guidance_scale, steps, sampler, seed, progress=track_steps):
        if editor is None or editor["background"] is None:
            raise gr.Error("Upload an image to edit first.")
        seed = check_prompt_and_seed(prompt, seed, "Write a prompt saying what to paint in the masked region.")
        image = editor["background"]
        with shown_to_user():
            mask = mask_from_layers(editor["layers"], image.size)
            return image_file(glide.edit(image, mask, prompt, guidance_scale, steps, sampler, seed))

    def settings(guidance_scale, elem_prefix):
        """The sampling controls both tabs share; the prefix keeps their elem_ids apart."""
        with gr.Row():
            guidance = gr.Slider(0, 10, value=guidance_scale, step=0.5, label="guidance scale",
                                 info="0 unconditional, 1 conditional, above 1 guided towards the prompt")
            steps = gr.Dropdown(STEP_CHOICES, value="50", allow_custom_value=True, label="steps",
                                info="or type a respacing such as 10,10,3,2,2", elem_id=f"{elem_prefix}steps")
        with gr.Row():
            sampler = gr.Radio(SAMPLER_CHOICES, value="ancestral", label="sampler")
            seed = seed_input()
        return guidance, steps, sampler, seed

    with gr.Blocks(title="hf_mmdl GLIDE", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# GLIDE text-to-image\nWrite a caption and sample images from it with classifier-free guidance"
            + (", or paint over part of an image and have it repainted as a prompt says" if glide.editors else "")
            + f". Images are shown enlarged with hard pixel edges. Model: `{model_path}`"
            + (f", inpainting: `{glide.inpaint_path}`." if glide.editors else ".")
        )
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(value=EXAMPLE_PROMPTS[0], label="prompt", elem_id="prompt")
                    negative_prompt = gr.Textbox(value="", label="negative prompt (replaces the empty caption of guidance)")
                    guidance, steps, sampler, seed = settings(3.0, elem_prefix="generate-")
                    num_images = gr.Slider(1, 8, value=4, step=1, label="number of images")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples([[p] for p in EXAMPLE_PROMPTS], [prompt], label="example prompts")
                samples = image_output("samples", "samples")
            inputs = [prompt, negative_prompt, guidance, steps, sampler, seed, num_images]
            gr.on([button.click, prompt.submit], generate, inputs, samples, api_name="generate")
        if glide.editors:
            with gr.Tab("Edit"):
                with gr.Row():
                    with gr.Column():
                        editor = ImageEditorInput(
                            value=example_edit(glide.edit_image_size), type="pil", image_mode="RGBA", format="png",
                            label="image: paint over the region to repaint", elem_id="editor",
                            brush=gr.Brush(colors=[(BRUSH_COLOUR, BRUSH_OPACITY)], color_mode="fixed"),
                            layers=gr.LayerOptions(allow_additional_layers=False),
                        )
                        edit_prompt = gr.Textbox(value=EXAMPLE_EDIT_PROMPT, label="prompt for the painted region",
                                                 elem_id="edit-prompt")
                        edit_settings = settings(5.0, elem_prefix="edit-")
                        button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                    edited = image_output("image (as the model sees it) | region to repaint | edit", "edited")
                inputs = [editor, edit_prompt, *edit_settings]
                gr.on([button.click, edit_prompt.submit], edit, inputs, edited, api_name="edit")
    return queued(demo)
