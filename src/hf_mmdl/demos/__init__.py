"""Gradio demos, one per architecture; each Space folder under `spaces/` launches one of them.

What every demo shares lives here: how errors reach the user, how seeds are read, how input images are opened and
output images and audio are handed to Gradio, the queue size, and the launch settings."""

import uuid
from contextlib import contextmanager
from pathlib import Path

import PIL.Image

# Requests waiting beyond this many are turned away with "queue full" instead of piling up without bound; the
# demos are tested with 50 concurrent requests, which all wait their turn.
QUEUE_SIZE = 64
# Seeds are whole numbers in [0, MAX_SEED]: every one is exact in the browser's numbers and accepted by torch.
MAX_SEED = 2**32 - 1
EXAMPLE_SIDE = 256  # the demos' example images are shown enlarged to about this side, not as thumbnails
# Output files live in Gradio's cache; files older than an hour are removed every hour (see `image_file`).
DELETE_CACHE = (3600, 3600)


@contextmanager
def shown_to_user():
    """ValueErrors of a model, processor or pipeline (bad sizes, settings, masks) reach the app as their message
    (`gr.Error`) instead of Gradio's generic error."""
    import gradio as gr

    try:
        yield
    except ValueError as error:
        raise gr.Error(str(error)) from error


def upscale(image: PIL.Image.Image, tile: int) -> PIL.Image.Image:
    """`image` enlarged by the largest whole factor that keeps it within `tile` pixels: every pixel a sharp block.
    Gradio shows an image at most at its own size (CSS `object-fit: scale-down`), so small images are enlarged here."""
    factor = max(1, tile // max(image.size))
    return image.resize((image.width * factor, image.height * factor), PIL.Image.Resampling.NEAREST)


def checked_seed(seed) -> int:
    """The seed field's value as an int in [0, MAX_SEED]; a cleared field, a fraction or an out-of-range number is
    refused with a `gr.Error` saying what to enter (torch would answer "Overflow when unpacking long long")."""
    import gradio as gr

    if seed is None:
        raise gr.Error(f"Enter a seed: any whole number from 0 to {MAX_SEED}; the same seed gives the same images.")
    if float(seed) != int(seed) or not 0 <= int(seed) <= MAX_SEED:
        raise gr.Error(f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed}.")
    return int(seed)


def image_file(image: PIL.Image.Image) -> str:
    """`image` written as a PNG under a name of its own in Gradio's cache folder; output components are given this
    path instead of the image.

    Gradio saves a returned PIL image under a folder named by the hash of its bytes and rewrites that file in place
    for every response, so two requests with identical outputs (the same upload, the same seed) race: one response's
    file is truncated and rewritten while the other is still being downloaded, and the client receives "Too little
    data for declared Content-Length". A file of its own is complete before its path is returned and is never
    written again; Gradio serves it from where it is (it is already in the cache) and deletes it with the app's
    `delete_cache` setting. PNG keeps every pixel (Gradio's default, WebP, would blur small images)."""
    path = _own_cache_path("image.png")
    image.save(path, format="PNG")
    return str(path)


def audio_file(waveform, sampling_rate: int) -> str:
    """A mono float waveform (samples in [-1, 1]) written as a 16-bit WAV file of its own in Gradio's cache, for
    output audio components (`gr.Audio(type="filepath")`): Gradio would write returned arrays to content-hashed
    files, with the same race between identical responses as images (see `image_file`)."""
    import numpy as np
    from scipy.io import wavfile

    path = _own_cache_path("audio.wav")
    pcm = np.round(np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)
    wavfile.write(path, int(sampling_rate), pcm)
    return str(path)


def _own_cache_path(name: str) -> Path:
    """`name` in a new folder of its own under Gradio's cache folder (removed with the app's `delete_cache`)."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / "hf_mmdl" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder / name


def launch(demo, **kwargs):
    """Serve a demo with every error's message shown to the user; other `launch` arguments (server name, port...)
    are Gradio's defaults, which a Space overrides, unless given."""
    return demo.launch(show_error=True, **kwargs)


def build_demo_for(model_path: str):
    """The Gradio demo of whichever architecture the saved folder (or Hub id) holds, built on it."""
    from ..architectures import architecture_of, resolve
    from ..hub import folder_config

    config, _ = folder_config(model_path)
    architecture = architecture_of(config.model_type)
    if architecture.demo is None:
        raise ValueError(f"{architecture.title} has no demo.")
    return resolve(architecture.demo)(str(model_path))
