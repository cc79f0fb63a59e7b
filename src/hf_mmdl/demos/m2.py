"""Gradio demo of an M² captioner: upload an image, get beam-search captions, and see how much each decoder layer
drew on each encoder level through the meshed gates."""

import random

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from ..data.scenes import generate_scene
from ..visualization import load_font
from . import DELETE_CACHE, EXAMPLE_SIDE, image_file, shown_to_user, upscale


class M2Captioner:
    """A loaded model + processor with the two things the demo shows."""

    def __init__(self, model_path: str):
        self.model = AutoModelForImageTextToText.from_pretrained(model_path).eval()
        self.processor = AutoProcessor.from_pretrained(model_path)
        if self.model.config.model_type != "m2_transformer":
            raise ValueError(f"{model_path} holds a {self.model.config.model_type!r} model, not an M² captioner.")
        if self.model.config.backbone_config is None:
            raise ValueError(f"{model_path} captions precomputed region features; the demo needs a model with a backbone.")

    @torch.no_grad()
    def caption(self, image: PIL.Image.Image, num_beams: int = 5) -> tuple[list[str], np.ndarray]:
        """The `num_beams` best captions, best first, and the mean gate value α per (decoder layer, encoder level,
        caption token) of the best one."""
        inputs = self.processor(images=image)
        num_beams = int(num_beams)
        sequences = self.model.generate(**inputs, num_beams=num_beams, num_return_sequences=num_beams)
        captions = self.processor.batch_decode(sequences)
        best = sequences[:1]
        outputs = self.model(**inputs, decoder_input_ids=best, output_gates=True, use_cache=False)
        length = max(1, len(captions[0].split()))
        gates = torch.stack(outputs.gates)[:, 0, :, 1 : length + 1].mean(-1)  # (layers, levels, tokens)
        return captions, gates.float().numpy()


def gate_heatmap(gates: np.ndarray, words: list[str], cell: int = 28) -> PIL.Image.Image:
    """One row per (decoder layer, encoder level), one column per caption word; darker = larger mean gate α."""
    layers, levels, tokens = gates.shape
    label_width, header = 96, 80
    image = PIL.Image.new("RGB", (label_width + cell * tokens + 8, header + cell * layers * levels + 8), "white")
    draw = PIL.ImageDraw.Draw(image)
    font = load_font(11)
    for t, word in enumerate(words[:tokens]):
        draw.text((label_width + t * cell + 4, header - 14 - 10 * (t % 6)), word, fill="black", font=font)
    for layer in range(layers):
        for level in range(levels):
            y = header + (layer * levels + level) * cell
            draw.text((4, y + 8), f"layer {layer + 1} · lvl {level + 1}", fill="black", font=font)
            for t in range(tokens):
                shade = int(255 * (1 - float(gates[layer, level, t])))
                draw.rectangle((label_width + t * cell, y, label_width + (t + 1) * cell - 2, y + cell - 2), fill=(shade, shade, 255))
    return image


EMPTY_CAPTION = "(empty caption: the model ended the caption at its first word; it may need more training)"


def example_scene(seed: int = 7) -> PIL.Image.Image:
    """A built-in scene, enlarged with hard pixel edges to about EXAMPLE_SIDE so that it is not shown as a thumbnail."""
    return upscale(generate_scene(random.Random(seed))["image"], EXAMPLE_SIDE)


def shown_caption(caption: str) -> str:
    """A caption as the page shows it: an empty one says so instead of leaving a blank box."""
    return caption if caption.strip() else EMPTY_CAPTION


def build_demo(model_path: str):
    """The Blocks app, queued; `api_name="caption"` is its one endpoint, the one gradio_client calls."""
    import gradio as gr

    from .widgets import ImageInput, image_output, queued

    captioner = M2Captioner(model_path)

    def run(image, num_beams):
        if image is None:
            raise gr.Error("Upload an image first.")
        with shown_to_user():
            captions, gates = captioner.caption(image, num_beams)
        best = captions[0]
        others = "\n".join(f"{i + 2}. {shown_caption(c)}" for i, c in enumerate(captions[1:]))
        return shown_caption(best), others, image_file(gate_heatmap(gates, best.split() or ["(empty)"]))

    with gr.Blocks(title="M² meshed-memory captioner", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# M² meshed-memory transformer\nCaptions an image with beam search, and shows the meshed gates: how "
            f"strongly each decoder layer used each encoder level for every word. Model: `{model_path}`."
        )
        with gr.Row():
            with gr.Column():
                image = ImageInput(type="pil", label="image", value=example_scene())
                beams = gr.Slider(1, 10, value=5, step=1, label="beam size")
                button = gr.Button("Caption", variant="primary")
            with gr.Column():
                best = gr.Textbox(label="caption", elem_id="caption")
                others = gr.Textbox(label="other beams", lines=4)
                heatmap = image_output("meshed gates α per layer and encoder level")
        button.click(run, [image, beams], [best, others, heatmap], api_name="caption")
        # The page opens captioned; the load event is no API endpoint (gradio would name it "/run").
        demo.load(run, [image, beams], [best, others, heatmap], api_visibility="private")
    return queued(demo)
