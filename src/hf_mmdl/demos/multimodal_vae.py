"""Gradio demo of the multimodal VAE: "image ± attribute" (z(image) − v(word a) + v(word b), decoded into an image and
a caption), caption → image and image → caption.

An attribute vector v(word) is the mean text posterior of the built-in scene captions ("a red circle in the top
left", every colour, shape and position the model's vocabulary holds) that contain the word: the direction the
model's caption encoder gives that word, as the training run measures it. Images are shown enlarged with hard pixel
edges, each output a file of its own (`image_file`).
"""

import PIL.Image
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor

from ..data.attribute_scenes import COMBINATIONS
from ..data.text_to_image import render_prompt_scene, scene_caption
from . import EXAMPLE_SIDE, DELETE_CACHE, image_file, shown_to_user, upscale
from .autoencoders import tile_images

MODEL_TYPE = "multimodal_vae"


class MultimodalVAEDemo:
    """A loaded multimodal VAE + processor, with the attribute vectors of the words its scene captions use."""

    def __init__(self, model_path: str):
        # Read the config first: a folder of another architecture fails with a clear message before any weights load.
        model_type = AutoConfig.from_pretrained(model_path).model_type
        if model_type != MODEL_TYPE:
            raise ValueError(f"{model_path} holds a {model_type!r} model; this demo shows a {MODEL_TYPE!r} model.")
        self.model = AutoModel.from_pretrained(model_path).eval()
        self.processor = AutoProcessor.from_pretrained(model_path)
        vocabulary = self.processor.vocabulary
        captions = [scene_caption(shape, colour, position) for colour, shape, position in COMBINATIONS
                    if {colour, shape, *position.split()} <= vocabulary]
        if not captions:
            raise ValueError(f"{model_path}'s vocabulary holds none of the built-in scene captions, which the "
                             "attribute vectors are averaged over.")
        with torch.no_grad():
            latents = self.model.encode(**self.processor(text=captions)).latent_mean
        words = sorted({word for caption in captions for word in caption.split()[1:3]})  # colours and shapes
        self.vectors = {word: latents[[word in caption.split() for caption in captions]].mean(0, keepdim=True)
                        for word in words}
        self.size = self.model.config.image_size

    @property
    def words(self) -> list[str]:
        return list(self.vectors)

    def _shown(self, images: torch.Tensor) -> list[PIL.Image.Image]:
        return self.processor.postprocess(images)

    @torch.no_grad()
    def edit(self, image: PIL.Image.Image, minus: str, plus: str) -> tuple[PIL.Image.Image, str]:
        """Input | z(image) − v(minus) + v(plus) decoded, and the caption generated from that latent."""
        for name, word in (("remove", minus), ("add", plus)):
            if word not in self.vectors:
                raise ValueError(f"Choose the word to {name} among {self.words}, got {word!r}.")
        inputs = self.processor(images=image)
        latents = self.model.arithmetic(inputs, self.vectors[minus], self.vectors[plus])
        pair = torch.cat([(inputs["pixel_values"] + 1) / 2, self.model.decode_image(latents)])
        caption = self.processor.batch_decode(self.model.generate_text(latents))[0]
        return tile_images(self._shown(pair), columns=2), caption

    @torch.no_grad()
    def draw(self, caption: str) -> tuple[PIL.Image.Image, str]:
        """The image decoded from the caption's posterior mean, and the caption generated back from it."""
        latents = self.model.encode(**self.processor(text=caption)).latent_mean
        return tile_images(self._shown(self.model.decode_image(latents)), columns=1), \
            self.processor.batch_decode(self.model.generate_text(latents))[0]

    @torch.no_grad()
    def describe(self, image: PIL.Image.Image, num_beams: int) -> str:
        latents = self.model.encode(**self.processor(images=image)).latent_mean
        return self.processor.batch_decode(self.model.generate_text(latents, num_beams=int(num_beams)))[0]

    def example(self) -> PIL.Image.Image:
        return upscale(render_prompt_scene("circle", "red", "top left", self.size), EXAMPLE_SIDE)


def build_demo(model_path: str):
    """The Blocks app, queued. Its `api_name`s ("edit", "draw", "describe") are the endpoints gradio_client calls;
    `demo.load` fills the outputs from an example, so the page opens with results."""
    import gradio as gr

    from .widgets import ImageInput, image_output, queued

    demo_model = MultimodalVAEDemo(model_path)
    words = demo_model.words

    def edit(image, minus, plus):
        if image is None:
            raise gr.Error("Upload an image first.")
        with shown_to_user():
            pair, caption = demo_model.edit(image, minus, plus)
        return image_file(pair), caption

    def draw(caption):
        with shown_to_user():
            image, back = demo_model.draw(caption)
        return image_file(image), back

    def describe(image, num_beams):
        if image is None:
            raise gr.Error("Upload an image first.")
        with shown_to_user():
            return demo_model.describe(image, num_beams)

    with gr.Blocks(title="hf_mmdl multimodal VAE", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# Multimodal VAE\nOne latent for images and captions (product or mixture of experts). Edit an "
                    "image through words, draw a caption, caption an image. Model: " f"`{model_path}`.")
        with gr.Tab("Image ± attribute"):
            with gr.Row():
                with gr.Column():
                    image = ImageInput(type="pil", image_mode=None, label="image", value=demo_model.example())
                    minus = gr.Dropdown(words, value="red" if "red" in words else words[0], label="remove (word)")
                    plus = gr.Dropdown(words, value="blue" if "blue" in words else words[-1], label="add (word)")
                    button = gr.Button("z(image) − v(remove) + v(add)", variant="primary")
                with gr.Column():
                    outputs = [image_output("input | decoded result", "edited"), gr.Textbox(label="caption of the result")]
            button.click(edit, [image, minus, plus], outputs, api_name="edit")
            demo.load(edit, [image, minus, plus], outputs, api_visibility="private")
        with gr.Tab("Caption → image"):
            with gr.Row():
                with gr.Column():
                    caption = gr.Textbox(value="a green square in the bottom right", label="caption")
                    button = gr.Button("Draw", variant="primary")
                with gr.Column():
                    drawn = [image_output("decoded from the caption", "drawn"), gr.Textbox(label="caption read back")]
            button.click(draw, [caption], drawn, api_name="draw")
        with gr.Tab("Image → caption"):
            with gr.Row():
                with gr.Column():
                    source = ImageInput(type="pil", image_mode=None, label="image", value=demo_model.example())
                    beams = gr.Slider(1, 5, value=1, step=1, label="beams")
                    button = gr.Button("Caption", variant="primary")
                described = gr.Textbox(label="caption")
            button.click(describe, [source, beams], described, api_name="describe")
    return queued(demo)
