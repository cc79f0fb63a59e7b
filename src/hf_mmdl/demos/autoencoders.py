"""Gradio demo of the package's image autoencoders: upload an image and see its reconstruction; for the DALL-E dVAE
also the grid of discrete tokens it became, for the image VAE also samples from the prior and latent interpolations.

The models' images are small (often 32×32), so every image is shown upscaled by a whole factor with NEAREST
resampling and sent to the browser as PNG: pixels stay crisp, not smoothed or compressed into a blur. Each output is a
file of its own (`image_file`), so concurrent requests with identical outputs never share a file.
"""

import colorsys
import math

import PIL.Image
import PIL.ImageDraw
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor

from ..visualization import load_font
from . import DELETE_CACHE, checked_seed, image_file, shown_to_user, upscale
from .m2 import example_scene

MODEL_TYPES = ("image_vae", "dvae")
TILE = 192  # target display side of one image; the real side is the largest whole multiple of the image side ≤ TILE
GAP = 8  # white pixels between the images of a grid
TOKEN_GRID_SIDE = 384  # target display side of the dVAE's token grid
GOLDEN_RATIO = (1 + 5**0.5) / 2


def tile_images(images: list[PIL.Image.Image], columns: int) -> PIL.Image.Image:
    """Equal-sized images, upscaled, in rows of `columns` on white: samples, interpolation strips, input | output."""
    tiles = [upscale(image.convert("RGB"), TILE) for image in images]
    width, height = tiles[0].size
    rows = math.ceil(len(tiles) / columns)
    sheet = PIL.Image.new("RGB", (columns * (width + GAP) - GAP, rows * (height + GAP) - GAP), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * (width + GAP), (i // columns) * (height + GAP)))
    return sheet


def token_colour(token_id: int) -> tuple[int, int, int]:
    """A fixed colour per token id: hues a golden-ratio turn apart, so nearby ids look different, and the same id
    has the same colour in every image."""
    hue = (token_id / GOLDEN_RATIO) % 1.0
    value = 0.95 if token_id % 2 else 0.7
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.6, value))


def token_grid_image(token_ids: torch.Tensor) -> PIL.Image.Image:
    """One coloured cell per position of an (h, w) token grid, with its id written in where the number fits."""
    rows = token_ids.tolist()
    cell = max(4, TOKEN_GRID_SIDE // max(len(rows), len(rows[0])))
    image = PIL.Image.new("RGB", (len(rows[0]) * cell, len(rows) * cell), "white")
    draw = PIL.ImageDraw.Draw(image)
    font = load_font(max(8, cell // 3))
    for y, row in enumerate(rows):
        for x, token_id in enumerate(row):
            colour = token_colour(token_id)
            draw.rectangle((x * cell, y * cell, (x + 1) * cell - 1, (y + 1) * cell - 1), fill=colour, outline="white")
            left, top, right, bottom = draw.textbbox((0, 0), str(token_id), font=font)
            if right - left <= cell - 4:
                centred = ((x + 0.5) * cell - (left + right) / 2, (y + 0.5) * cell - (top + bottom) / 2)
                luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
                draw.text(centred, str(token_id), fill="black" if luminance > 140 else "white", font=font)
    return image


class Autoencoder:
    """A loaded image VAE or dVAE + its image processor, with what the demo shows for each."""

    def __init__(self, model_path: str):
        # Read the config first: a folder of another architecture fails with a clear message before any weights load.
        model_type = AutoConfig.from_pretrained(model_path).model_type
        if model_type not in MODEL_TYPES:
            raise ValueError(f"{model_path} holds a {model_type!r} model; this demo shows image autoencoders {MODEL_TYPES}.")
        self.model = AutoModel.from_pretrained(model_path).eval()
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.is_discrete = model_type == "dvae"

    def pixel_values(self, image: PIL.Image.Image) -> torch.Tensor:
        return self.processor(images=image)["pixel_values"]

    def to_images(self, images: torch.Tensor) -> list[PIL.Image.Image]:
        return self.processor.postprocess(images)

    def reconstruct(self, image: PIL.Image.Image) -> tuple[PIL.Image.Image, torch.Tensor | None]:
        """Input | reconstruction side by side, and for the dVAE the (h, w) token ids the reconstruction decodes."""
        pixel_values = self.pixel_values(image)
        token_ids = None
        if self.is_discrete:
            token_ids = self.model.get_codebook_indices(pixel_values)
            reconstruction = self.model.decode_code(token_ids)
        else:
            reconstruction = self.model.reconstruct(pixel_values)
        pair = self.to_images(torch.cat([self.processor.to_unit_range(pixel_values), reconstruction]))
        return tile_images(pair, columns=2), None if token_ids is None else token_ids[0]

    def sample(self, num_images: int, temperature: float, seed: int) -> PIL.Image.Image:
        """A grid of images decoded from z ~ N(0, t²·I); the same seed gives the same samples."""
        generator = torch.Generator(self.model.device).manual_seed(seed)
        images = self.model.sample(int(num_images), temperature=float(temperature), generator=generator)
        return tile_images(self.to_images(images), columns=min(int(num_images), 4))

    def interpolate(self, image_a: PIL.Image.Image, image_b: PIL.Image.Image, steps: int, spherical: bool) -> PIL.Image.Image:
        """A strip of `steps` images decoded along the path between the two images' posterior means."""
        images = self.model.interpolate(self.pixel_values(image_a), self.pixel_values(image_b), int(steps), spherical=spherical)
        return tile_images(self.to_images(images), columns=int(steps))


def build_demo(model_path: str):
    """The Blocks app, queued. Its `api_name`s ("reconstruct"; for the VAE also "sample" and "interpolate") are the
    endpoints gradio_client calls; `demo.load` fills every output from the example scenes, so the page opens with
    results. Outputs are PNG files of their own (`image_file`)."""
    import gradio as gr

    from .widgets import ImageInput, image_output, queued, seed_input

    autoencoder = Autoencoder(model_path)

    def reconstruct(image):
        if image is None:
            raise gr.Error("Upload an image first.")
        with shown_to_user():
            pair, token_ids = autoencoder.reconstruct(image)
        if token_ids is None:
            return image_file(pair)
        distinct = token_ids.unique().numel()
        height, width = token_ids.shape
        summary = f"{distinct} distinct tokens of {autoencoder.model.config.vocab_size} in the {height}×{width} grid"
        return image_file(pair), image_file(token_grid_image(token_ids)), summary

    def sample(num_images, temperature, seed):
        seed = checked_seed(seed)
        with shown_to_user():
            return image_file(autoencoder.sample(num_images, temperature, seed))

    def interpolate(image_a, image_b, steps, spherical):
        if image_a is None or image_b is None:
            raise gr.Error("Upload two images to interpolate between.")
        with shown_to_user():
            return image_file(autoencoder.interpolate(image_a, image_b, steps, spherical))

    def input_image(label, seed, elem_id=None):
        # image_mode=None keeps transparency, which the processor composites on white.
        return ImageInput(type="pil", image_mode=None, label=label, value=example_scene(seed), elem_id=elem_id)

    kind = "DALL-E discrete VAE" if autoencoder.is_discrete else "image VAE"
    with gr.Blocks(title=f"hf_mmdl {kind}", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {kind}\nUpload an image to encode and decode it. Images are shown enlarged with hard pixel edges. "
            f"Model: `{model_path}`."
        )
        with gr.Tab("Reconstruct"):
            with gr.Row():
                with gr.Column():
                    image = input_image("image", seed=7, elem_id="image")
                    button = gr.Button("Reconstruct", variant="primary")
                with gr.Column():
                    outputs = [image_output("input (as the model sees it) | reconstruction", "reconstruction")]
                    if autoencoder.is_discrete:
                        outputs.append(image_output("token grid: one colour per token id", "token-grid"))
                        outputs.append(gr.Textbox(label="tokens used", elem_id="token-count"))
            button.click(reconstruct, [image], outputs, api_name="reconstruct")
            demo.load(reconstruct, [image], outputs, api_visibility="private")
        if not autoencoder.is_discrete:
            with gr.Tab("Sample"):
                with gr.Row():
                    with gr.Column():
                        num_images = gr.Slider(1, 16, value=8, step=1, label="number of samples")
                        temperature = gr.Slider(0, 2, value=1, step=0.05, label="temperature (std of z)")
                        seed = seed_input()
                        button = gr.Button("Sample", variant="primary")
                    samples = image_output("samples from the prior", "samples")
                button.click(sample, [num_images, temperature, seed], samples, api_name="sample")
                demo.load(sample, [num_images, temperature, seed], samples, api_visibility="private")
            with gr.Tab("Interpolate"):
                with gr.Row():
                    image_a = input_image("from", seed=1)
                    image_b = input_image("to", seed=2)
                with gr.Row():
                    steps = gr.Slider(2, 16, value=8, step=1, label="steps")
                    spherical = gr.Checkbox(label="spherical (along the great circle)")
                button = gr.Button("Interpolate", variant="primary")
                strip = image_output("decoded path between the two latents", "interpolation")
                inputs = [image_a, image_b, steps, spherical]
                button.click(interpolate, inputs, strip, api_name="interpolate")
                demo.load(interpolate, inputs, strip, api_visibility="private")
    return queued(demo)
