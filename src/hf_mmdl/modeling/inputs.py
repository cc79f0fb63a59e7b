"""Input checks and pixel maps that models of several architectures share (and their processors apply)."""

import torch


def check_image_batch(pixel_values: torch.Tensor, channels: int, multiple: int, side: int | None = None) -> None:
    """Raise a ValueError naming the problem unless `pixel_values` is a float (batch, channels, H, W) tensor with H
    and W divisible by `multiple` (and equal to `side` when the model needs one fixed size)."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if hasattr(pixel_values, "shape") else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a 4-D tensor (batch, channels, height, width), got {shape}.")
    if not pixel_values.is_floating_point():
        raise ValueError(f"pixel_values must be a float tensor (use the processor), got {pixel_values.dtype}.")
    _, got_channels, height, width = pixel_values.shape
    if got_channels != channels:
        raise ValueError(
            f"pixel_values has {got_channels} channels but the model expects {channels}; convert the images "
            f"(the model's processor does) or use a model with in_channels={got_channels}."
        )
    if side is not None and (height, width) != (side, side):
        raise ValueError(
            f"pixel_values are {height}×{width} but this model's vector latent needs {side}×{side} images; resize "
            "them with the model's processor."
        )
    if height % multiple or width % multiple:
        raise ValueError(f"Image height and width must be divisible by {multiple}, got {height}×{width}.")


def map_pixels(images: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """DALL-E Eq. 3 on [0, 1] images: φ(x) = (1 − 2ε)x + ε keeps the logit-Laplace density away from 0 and 1."""
    return (1 - 2 * eps) * images + eps


def unmap_pixels(mapped: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Inverse of `map_pixels`, clamped to [0, 1]."""
    return ((mapped - eps) / (1 - 2 * eps)).clamp(0, 1)


def to_model_dtype(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A floating `tensor` cast to the model's floating `dtype` (as transformers models cast their inputs): processors
    return float32, which a model loaded with `dtype=torch.bfloat16` (or float16) could not otherwise take. Integer
    and boolean tensors (ids, masks), `None` and non-tensors (left to the caller's checks) pass unchanged."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dtype == dtype:
        return tensor
    return tensor.to(dtype)
