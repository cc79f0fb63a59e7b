"""Input rules and mode conversion shared by the package's image processors, pipelines, figures and baselines.

One rule per input kind, applied by every image processor (M², the autoencoders, GLIDE and its masks), so that an
input means the same thing wherever it goes:

- PIL images: the modes in `CONVERTIBLE_MODES`. Transparent images (RGBA, LA, PA, or P / L / RGB with a
  transparency key) are composited on WHITE by `flatten_transparency`; the GLIDE pipelines (through their
  processor), the captioning figures, the nearest-neighbour caption baseline and GLIDE's retrieval scoring read
  images through the same helper (`to_rgb`), so they see the pixels the models see. 16-bit, 32-bit integer and float
  modes ("I;16", "I", "F") are refused: their value range is not known.
- Integer arrays and tensors: values must lie in 0–255 (any integer dtype); uint16 60000, int64 −5 or int32 300 are
  refused, never wrapped around.
- Float arrays and tensors: finite values in [0, 1].
- Boolean arrays and tensors: refused as images (True is not a colour); edit masks read them as True = repaint.
- Arrays are (height, width), (height, width, channels) or (channels, height, width) with 1, 3 or 4 channels; a
  4-D array is a batch.

Each refusal is a `ValueError` naming the image and saying what to pass. transformers' PIL backend then converts
what passed.
"""

import numpy as np
import PIL.Image

# PIL modes that convert to RGB without losing meaning; transparency is composited on white (`flatten_transparency`).
CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}

WHAT_TO_PASS = "pass uint8 arrays in 0-255 or float arrays in [0, 1]"


def has_transparency(image: PIL.Image.Image) -> bool:
    """Whether `image` has an alpha band or a transparency key (palette or colour)."""
    return "A" in image.getbands() or image.info.get("transparency") is not None


def flatten_transparency(image: PIL.Image.Image) -> PIL.Image.Image:
    """`image` with its transparent pixels composited on white (as RGB); an opaque image is returned as is. The
    package's one rule for transparency: the emoji and icon data sets are drawn on white, and a transparent pixel's
    stored colour (often black) is not what a viewer sees."""
    if not has_transparency(image):
        return image
    rgba = image.convert("RGBA")
    return PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """An RGB image as the processors see it: transparency on white (`flatten_transparency`), then PIL's RGB
    conversion. Figures and pixel baselines use this so that they see the models' pixels."""
    return flatten_transparency(image).convert("RGB")


def _check_pil_image(image: PIL.Image.Image, index: int) -> PIL.Image.Image:
    if image.mode not in CONVERTIBLE_MODES:
        raise ValueError(
            f"Image {index} has PIL mode {image.mode!r}, which cannot be converted to RGB without choosing a value "
            f"range. Convert it yourself first, e.g. `image.convert('RGB')` after scaling to 0-255. "
            f"Accepted modes: {sorted(CONVERTIBLE_MODES)}."
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image {index} is empty ({image.width}x{image.height} pixels).")
    if image.mode in {"CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX"}:
        # transformers' RGB conversion only knows L/P/RGBA-style modes; these need PIL's own colour conversion.
        image = image.convert("RGB")
    return image


def _as_numpy(image) -> np.ndarray:
    if hasattr(image, "detach"):  # a torch tensor; numpy has no bfloat16
        image = image.detach().cpu()
        return (image.float() if image.is_floating_point() else image).numpy()
    return np.asarray(image)


def _check_array_values(array: np.ndarray, index: int) -> None:
    """The value rules for array images: see the module docstring."""
    if array.dtype == bool:
        raise ValueError(f"Image {index} is a boolean array; {WHAT_TO_PASS} (e.g. `array.astype(np.uint8) * 255`). "
                         "Boolean arrays are read only as edit masks (True = repaint).")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"Image {index} contains NaN or infinite pixel values.")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError(f"Image {index} is a float array with values in [{array.min():.3g}, {array.max():.3g}]; "
                             f"float images must lie in [0, 1] ({WHAT_TO_PASS}).")
    elif np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"Image {index} is a {array.dtype} array with values in [{array.min()}, {array.max()}], "
                             f"outside 0-255; {WHAT_TO_PASS} (scale 16-bit images by 255 / 65535 first).")
    else:
        raise ValueError(f"Image {index} is a {array.dtype} array; {WHAT_TO_PASS}.")


def _check_array_image(image, index: int) -> PIL.Image.Image:
    array = _as_numpy(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(
            f"Image {index} is an array of shape {array.shape}; expected (height, width), (height, width, channels) "
            "or (channels, height, width)."
        )
    channel_axis = -1 if array.shape[-1] in (1, 3, 4) else 0 if array.shape[0] in (1, 3, 4) else None
    if channel_axis is None:
        raise ValueError(
            f"Image {index} has shape {array.shape}: no axis holds 1 (grey), 3 (RGB) or 4 (RGBA) channels."
        )
    _check_array_values(array, index)
    if channel_axis == 0:
        array = np.moveaxis(array, 0, -1)
    if np.issubdtype(array.dtype, np.floating):
        array = np.round(array * 255)
    array = array.astype(np.uint8)
    if array.shape[-1] == 1:
        return PIL.Image.fromarray(array[..., 0], mode="L")
    return PIL.Image.fromarray(array, mode="RGB" if array.shape[-1] == 3 else "RGBA")


def validate_images(images) -> list[PIL.Image.Image]:
    """Check a single image, a list of images or a 4-D batch against the rules above and return them as PIL
    images ready for RGB conversion (arrays become "L", "RGB" or "RGBA" images). Raises a `ValueError` naming the
    first image that breaks a rule."""
    if images is None:
        raise ValueError("No images given.")
    if isinstance(images, (PIL.Image.Image, np.ndarray)) or hasattr(images, "detach"):
        if getattr(images, "ndim", 3) == 4:
            images = list(images)
        else:
            images = [images]
    images = list(images)
    if not images:
        raise ValueError("The list of images is empty.")
    checked = []
    for index, image in enumerate(images):
        if isinstance(image, PIL.Image.Image):
            checked.append(_check_pil_image(image, index))
        elif isinstance(image, np.ndarray) or hasattr(image, "detach"):
            checked.append(_check_array_image(image, index))
        else:
            raise ValueError(f"Image {index} is a {type(image).__name__}; pass PIL images or numpy arrays.")
    return checked
