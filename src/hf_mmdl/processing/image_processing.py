"""Input checks and mode conversion shared by the package's image processors.

transformers' PIL backend converts what it can; these checks run first so that what it cannot handle (16-bit or
float PIL modes, arrays with a wrong channel count, NaN pixels) fails with a message that says what to do.
"""

import numpy as np
import PIL.Image

# PIL modes that convert to RGB without losing meaning; alpha is composited on white by transformers.
CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


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


def _check_array_image(image: np.ndarray, index: int) -> np.ndarray:
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
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
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"Image {index} contains NaN or infinite pixel values.")
    if channel_axis == 0:
        array = np.moveaxis(array, 0, -1)
    if np.issubdtype(array.dtype, np.floating):
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Image {index} is a float array with values in [{array.min():.3g}, {array.max():.3g}]; float images "
                "must lie in [0, 1] (or pass uint8 in 0-255)."
            )
        array = np.round(array * 255)
    array = array.astype(np.uint8)
    if array.shape[-1] == 1:
        return PIL.Image.fromarray(array[..., 0], mode="L")
    return PIL.Image.fromarray(array, mode="RGB" if array.shape[-1] == 3 else "RGBA")


def validate_images(images) -> list[PIL.Image.Image]:
    """Check a single image or a list of images and return them as PIL images ready for RGB conversion."""
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
