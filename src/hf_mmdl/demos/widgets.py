"""Gradio components the demos share (imported only when a demo is built: Gradio is the `demo` extra)."""

import gradio as gr
import PIL.Image

from . import MAX_SEED, QUEUE_SIZE


def refusing_unreadable_uploads(preprocess, payload):
    """Run a component's `preprocess`, turning an upload PIL cannot read into a `gr.Error` that says so (Gradio opens
    every uploaded image before the app's function runs, and would answer with its generic "Error")."""
    try:
        return preprocess(payload)
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise gr.Error(f"The uploaded file is not an image that can be read ({type(error).__name__}); upload a PNG, "
                       "JPEG, WebP, GIF or BMP file.") from error


class ImageInput(gr.Image):
    """`gr.Image` for uploads, refusing a file that is not an image with a clear message."""

    is_template = True  # drawn by gr.Image's own front-end component

    def preprocess(self, payload):
        return refusing_unreadable_uploads(super().preprocess, payload)


class AudioInput(gr.Audio):
    """`gr.Audio` for uploads and recordings, refusing a file that is not readable audio with a clear message (Gradio
    decodes uploads with pydub before the app's function runs; without ffmpeg it reads only WAV, and it answers a
    file it cannot read with a message about a missing `ffprobe`, or its generic "Error")."""

    is_template = True  # drawn by gr.Audio's own front-end component

    def preprocess(self, payload):
        from pydub.exceptions import CouldntDecodeError

        try:
            return super().preprocess(payload)
        except (CouldntDecodeError, RuntimeError, OSError) as error:
            raise gr.Error(f"The uploaded file is not audio that can be read ({type(error).__name__}); upload a WAV "
                           "file (MP3, FLAC, OGG and other formats need ffmpeg on the server).") from error


class ImageEditorInput(gr.ImageEditor):
    """`gr.ImageEditor` refusing an uploaded background that is not an image with a clear message."""

    is_template = True  # drawn by gr.ImageEditor's own front-end component

    def preprocess(self, payload):
        return refusing_unreadable_uploads(super().preprocess, payload)


def image_output(label: str, elem_id: str | None = None) -> gr.Image:
    """An output image; the demos return file paths from `image_file` to it (never PIL images: see there)."""
    return gr.Image(type="filepath", label=label, elem_id=elem_id)


def seed_input(label: str = "seed") -> gr.Number:
    """The seed field: whole numbers in [0, MAX_SEED] (the app checks again: API clients bypass the field)."""
    return gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label=label)


def queued(demo: gr.Blocks) -> gr.Blocks:
    """`demo` with a bounded queue: QUEUE_SIZE waiting requests, each event one at a time."""
    return demo.queue(max_size=QUEUE_SIZE)
