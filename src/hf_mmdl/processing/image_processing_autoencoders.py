"""Image processors of the autoencoders: PIL images or arrays in, model pixels out, and decoded images back to PIL."""

import numpy as np
import PIL.Image
import torch
from transformers import BatchFeature
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling

from ..modeling.inputs import map_pixels, unmap_pixels
from .image_processing import flatten_transparency, validate_images

IMAGE_MODES = ("RGB", "L")
OUTPUT_TYPES = ("pil", "np", "pt")


class AutoencoderImageProcessor(PilBackend):
    """Prepares images for an image autoencoder and turns its outputs back into images.

    Resizes the short side to `size` and centre-crops to `crop_size`, converts to `image_mode` ("RGB", or "L" for
    one-channel models; transparency is composited on white), scales to [0, 1], then either normalises
    (mean = std = 0.5 gives the [-1, 1] range of `ImageVAEModel` / `AutoencoderKL`) or applies DALL-E's pixel map
    φ(x) = (1 − 2ε)x + ε (`do_map_pixels`, for `DiscreteVAEModel`). `postprocess` turns [0, 1] image tensors (what
    the models' `reconstruction`, `reconstruct`, `sample`, `interpolate` and `decode_code` return) into PIL images.
    Inputs follow the package's image rules (`processing.image_processing`): modes it cannot convert (16-bit,
    float), empty images, boolean arrays, integer arrays outside 0–255 and float arrays outside [0, 1] or with NaN
    raise a `ValueError`."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 32}
    do_center_crop = True
    crop_size = {"height": 32, "width": 32}
    do_resize = True
    do_rescale = True
    do_normalize = True
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_convert_rgb = False

    def __init__(self, image_mode: str = "RGB", do_map_pixels: bool = False, map_pixels_eps: float = 0.1, **kwargs):
        if image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode must be one of {IMAGE_MODES}, got {image_mode!r}.")
        if image_mode == "L":
            kwargs.setdefault("image_mean", [0.5])
            kwargs.setdefault("image_std", [0.5])
        super().__init__(**kwargs)
        self.image_mode = image_mode
        self.do_map_pixels = do_map_pixels
        self.map_pixels_eps = map_pixels_eps

    @property
    def num_channels(self) -> int:
        return 3 if self.image_mode == "RGB" else 1

    def preprocess(self, images, *args, **kwargs) -> BatchFeature:
        images = [flatten_transparency(image).convert(self.image_mode) for image in validate_images(images)]
        kwargs.setdefault("return_tensors", "pt")
        batch = super().preprocess(images, *args, **kwargs)
        pixel_values = torch.as_tensor(np.asarray(batch["pixel_values"]))
        if pixel_values.ndim == 3:  # one-channel images come back without a channel axis
            pixel_values = pixel_values[:, None]
        if self.do_map_pixels:
            pixel_values = map_pixels(pixel_values, self.map_pixels_eps)
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=kwargs["return_tensors"])

    def to_unit_range(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation or pixel map: model inputs back to [0, 1] images (e.g. to compare with a
        reconstruction, or to `postprocess` what the model saw)."""
        if self.do_map_pixels:
            return unmap_pixels(pixel_values, self.map_pixels_eps)
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=pixel_values.dtype)[:, None, None]
            std = torch.tensor(self.image_std, dtype=pixel_values.dtype)[:, None, None]
            return pixel_values * std.to(pixel_values.device) + mean.to(pixel_values.device)
        return pixel_values

    def postprocess(self, images: torch.Tensor, output_type: str = "pil"):
        """[0, 1] images of shape (batch, channels, height, width) → a list of PIL images, a uint8 NHWC array
        (`"np"`), or the clamped float tensor (`"pt"`)."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Expected images of shape (batch, 1 or 3, height, width), got {tuple(images.shape)}.")
        images = images.detach().float().cpu().clamp(0, 1)
        if output_type == "pt":
            return images
        array = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        if output_type == "np":
            return array
        return [PIL.Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, mode="L" if a.shape[-1] == 1 else "RGB") for a in array]


class ImageVAEImageProcessor(AutoencoderImageProcessor):
    """[`AutoencoderImageProcessor`] with `ImageVAEModel`'s defaults: [-1, 1] pixels."""


class DiscreteVAEImageProcessor(AutoencoderImageProcessor):
    """[`AutoencoderImageProcessor`] with `DiscreteVAEModel`'s defaults: [0, 1] pixels mapped into (ε, 1 − ε)."""

    do_normalize = False

    def __init__(self, do_map_pixels: bool = True, **kwargs):
        super().__init__(do_map_pixels=do_map_pixels, **kwargs)
