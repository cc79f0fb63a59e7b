"""Gradio demo of data2vec-multimodal's shared embedding space: type a caption, upload an image, or record or upload
a sound, and see its nearest neighbours among the images, captions and spoken captions of a small gallery.

The gallery is the built-in tri-modal scenes' test split (`hf_mmdl.data.trimodal`), drawn at the model's image size
and embedded once at start-up with `get_image_features`, `get_text_features` and `get_audio_features`; a query is
embedded the same way and compared by cosine similarity (the features are unit-length, so a dot product).
"""

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor

from ..data.speech import SAMPLING_RATE, resample
from ..data.trimodal import load_trimodal_dataset
from ..processing.audio_processing import PCM_FULL_SCALE, validate_audio
from ..visualization import load_font
from . import DELETE_CACHE, audio_file, image_file, shown_to_user, upscale
from .m2 import example_scene

MODEL_TYPE = "data2vec_multimodal"
GALLERY_ROWS = 60  # test rows of the built-in scenes: two per concept, embedded in a few seconds on a CPU
NEIGHBOURS = 5  # shown per modality, best first
TILE = 128  # display side of one neighbour image (enlarged by a whole factor)
GAP = 8  # white pixels between neighbour images
LABEL = 22  # pixels under each image for its rank and similarity
SMALLEST_SCENE = 24  # the scenes loader's smallest image side; the processor resizes to the model's side
BATCH = 16  # gallery rows embedded per forward pass
EXAMPLE_TEXT = "a red circle"


def mono_waveform(sampling_rate: int, samples) -> np.ndarray:
    """What a `gr.Audio(type="numpy")` input delivers, `(rate, (samples,) or (samples, channels) array)`, as a mono
    float32 waveform at the model's 16 kHz: int16/int32 PCM scaled by its full scale, channels averaged, then
    resampled. Empty, silent or non-finite audio raises the processor's `ValueError` (`validate_audio`)."""
    samples = np.asarray(samples)
    if samples.dtype in PCM_FULL_SCALE:  # before averaging: the mean of integers would lose their scale
        samples = samples / PCM_FULL_SCALE[samples.dtype]
    if samples.ndim == 2:  # Gradio's layout: (samples, channels)
        samples = samples.mean(axis=1)
    (clip,) = validate_audio(samples, sampling_rate, sampling_rate)
    return resample(clip, int(sampling_rate), SAMPLING_RATE)


class TrimodalSearch:
    """A loaded data2vec-multimodal model + processor and the embedded gallery it searches."""

    def __init__(self, model_path: str, num_rows: int = GALLERY_ROWS):
        # Read the config first: a folder of another architecture fails with a clear message before any weights load.
        config = AutoConfig.from_pretrained(model_path)
        if config.model_type != MODEL_TYPE:
            raise ValueError(f"{model_path} holds a {config.model_type!r} model; this demo shows {MODEL_TYPE!r} "
                             "models.")
        # AutoModel gives the bare encoder, also from a pre-training folder (its student's weights).
        self.model = AutoModel.from_pretrained(model_path).eval()
        self.processor = AutoProcessor.from_pretrained(model_path)
        image_size = max(SMALLEST_SCENE, config.vision_config.image_size)
        self.gallery = load_trimodal_dataset("scenes", num_train=30, num_test=num_rows, image_size=image_size)["test"]
        self.images = list(self.gallery["image"])
        self.captions = list(self.gallery["text"])
        self.clips = [np.asarray(clip, dtype=np.float32) for clip in self.gallery["audio"]]
        self.voices = list(self.gallery["voice"])
        self.embeddings = {
            "image": self._embed_all(lambda rows: self.embed_images(self.images[rows])),
            "text": self._embed_all(lambda rows: self.embed_texts(self.captions[rows])),
            "audio": self._embed_all(lambda rows: self.embed_audio(self.clips[rows])),
        }

    def _embed_all(self, embed) -> torch.Tensor:
        return torch.cat([embed(slice(start, start + BATCH)) for start in range(0, len(self.captions), BATCH)])

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.get_text_features(**self.processor(text=texts)).float()

    @torch.no_grad()
    def embed_images(self, images: list[PIL.Image.Image]) -> torch.Tensor:
        return self.model.get_image_features(**self.processor(images=images)).float()

    @torch.no_grad()
    def embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        return self.model.get_audio_features(**self.processor(audio=clips, sampling_rate=SAMPLING_RATE)).float()

    def neighbours(self, query: torch.Tensor) -> dict[str, list[tuple[int, float]]]:
        """Per gallery modality, the `NEIGHBOURS` rows most similar to the (1, dim) query: (row, cosine), best first."""
        result = {}
        for modality, gallery in self.embeddings.items():
            similarity = gallery @ query[0]
            best = similarity.topk(min(NEIGHBOURS, len(similarity)))
            result[modality] = list(zip(best.indices.tolist(), best.values.tolist()))
        return result


def neighbour_sheet(images: list[PIL.Image.Image], scores: list[float]) -> PIL.Image.Image:
    """The neighbour images in a row, enlarged with hard pixel edges, each with its rank and cosine underneath."""
    tiles = [upscale(image.convert("RGB"), TILE) for image in images]
    width, height = tiles[0].size
    sheet = PIL.Image.new("RGB", (len(tiles) * (width + GAP) - GAP, height + LABEL), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    font = load_font(14)
    for i, (tile, score) in enumerate(zip(tiles, scores)):
        left = i * (width + GAP)
        sheet.paste(tile, (left, 0))
        draw.text((left + 2, height + 4), f"{i + 1}. cos {score:.3f}", fill="black", font=font)
    return sheet


def build_demo(model_path: str):
    """The Blocks app, queued. Its endpoints `"search_text"`, `"search_image"` and `"search_audio"` (the ones
    gradio_client calls) each return the nearest images (one PNG), captions and spoken captions (text, one line per
    neighbour: rank, cosine, caption) and the nearest spoken caption as a WAV file; `demo.load` searches the example
    caption, so the page opens with results."""
    import gradio as gr

    from .widgets import AudioInput, ImageInput, image_output, queued

    search = TrimodalSearch(model_path)

    def results(query: torch.Tensor):
        found = search.neighbours(query)
        images = [search.images[row] for row, _ in found["image"]]
        sheet = image_file(neighbour_sheet(images, [score for _, score in found["image"]]))
        captions = "\n".join(f"{i + 1}. cos {score:.3f}  {search.captions[row]}"
                             for i, (row, score) in enumerate(found["text"]))
        spoken = "\n".join(f"{i + 1}. cos {score:.3f}  “{search.captions[row]}” ({search.voices[row]})"
                           for i, (row, score) in enumerate(found["audio"]))
        nearest_clip = search.clips[found["audio"][0][0]]
        return sheet, captions, spoken, audio_file(nearest_clip, SAMPLING_RATE)

    def search_text(text):
        if text is None:
            raise gr.Error("Type a caption first.")
        with shown_to_user():
            return results(search.embed_texts([text]))

    def search_image(image):
        if image is None:
            raise gr.Error("Upload an image first.")
        with shown_to_user():
            return results(search.embed_images([image]))

    def search_audio(audio):
        if audio is None:
            raise gr.Error("Record or upload a sound first.")
        with shown_to_user():
            return results(search.embed_audio([mono_waveform(*audio)]))

    title = "data2vec-multimodal: one space for text, images and sound"
    with gr.Blocks(title=title, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# data2vec-multimodal\nOne encoder for text, images and audio. Type a caption, upload an image, or record "
            f"or upload a sound: its nearest neighbours among the {len(search.captions)} images, captions and spoken "
            "captions of the built-in scenes' test split are shown with their cosine similarity in the shared "
            f"embedding space. Images are shown enlarged with hard pixel edges. Model: `{model_path}`."
        )
        with gr.Tab("Text"):
            text = gr.Textbox(value=EXAMPLE_TEXT, label="caption", elem_id="query-text")
            text_button = gr.Button("Search with the caption", variant="primary")
        with gr.Tab("Image"):
            # image_mode=None keeps transparency, which the processor composites on white.
            image = ImageInput(type="pil", image_mode=None, label="image", value=example_scene())
            image_button = gr.Button("Search with the image", variant="primary")
        with gr.Tab("Audio"):
            # The example: the gallery's first spoken caption, as the 16-bit PCM Gradio stores sounds in.
            example = np.round(search.clips[0] * 32767).astype(np.int16)
            audio = AudioInput(sources=["upload", "microphone"], type="numpy", value=(SAMPLING_RATE, example),
                               label="sound (any sampling rate; stereo is mixed to mono)")
            audio_button = gr.Button("Search with the sound", variant="primary")
        with gr.Row():
            sheet = image_output("nearest images (rank, cosine)", "images")
            with gr.Column():
                captions = gr.Textbox(label="nearest captions", lines=NEIGHBOURS, elem_id="captions")
                spoken = gr.Textbox(label="nearest spoken captions (what was said, by which voice)", lines=NEIGHBOURS)
                nearest_audio = gr.Audio(type="filepath", label="the nearest spoken caption")
        outputs = [sheet, captions, spoken, nearest_audio]
        text_button.click(search_text, [text], outputs, api_name="search_text")
        text.submit(search_text, [text], outputs, api_visibility="private")
        image_button.click(search_image, [image], outputs, api_name="search_image")
        audio_button.click(search_audio, [audio], outputs, api_name="search_audio")
        # The page opens with the example caption's neighbours; the load event is no API endpoint.
        demo.load(search_text, [text], outputs, api_visibility="private")
    return queued(demo)
