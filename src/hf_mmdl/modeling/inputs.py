"""Input checks and pixel maps that models of several architectures share (and their processors apply).

Every public entry point that takes pixels or features (`forward`, `generate`, `encode`, `reconstruct`,
`get_codebook_indices`, ...) checks them here, so one rule holds for every architecture: NaN or infinite values raise
a `ValueError` naming the input, and so do values outside the range the model reads (e.g. 0–255 floats given to a
model that reads [-1, 1]). Each check is one reduction per call (`torch.isfinite(x).all()`, or `torch.aminmax` when
a range applies), in whatever precision the tensor has, so it costs little and works under bf16 autocast.
"""

import math

import torch

# Inputs may sit this far outside their documented range: bf16 rounds 0.9 (the dVAE's 1 − ε) to 0.8984, and
# float32 rescaling can give 1 + 1e-7. A wrong scale (0–255, or unmapped [-1, 1] pixels) is far outside it.
RANGE_TOLERANCE = 1e-2

_NOT_FINITE = ("{name} contains NaN or infinite values; pass finite numbers (check the data and any preprocessing that "
               "produced them).")


def check_float_tensor(values, name: str, ndim: int | None = None) -> None:
    """Raise a TypeError naming `name` unless `values` is a floating-point tensor (integer pixels 0-255 or features
    cast to float would mean other values), and a ValueError if it has another rank than `ndim`."""
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        found = values.dtype if isinstance(values, torch.Tensor) else type(values).__name__
        raise TypeError(f"{name} must be a float tensor (the processor's output), got {found}.")
    if ndim is not None and values.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor with the batch first, got shape {tuple(values.shape)}.")


def check_values(values: torch.Tensor, name: str, value_range: tuple[float, float] | None = None, hint: str = "") -> None:
    """Raise a ValueError naming `name` if the tensor `values` holds NaN or ±inf, or (with `value_range` =
    (low, high)) values outside [low, high] by more than `RANGE_TOLERANCE`; `hint` says what to pass instead.

    One reduction and one device sync per call: `torch.isfinite(values).all()` without a range, else
    `torch.aminmax`, which propagates NaN and ±inf to its result and so answers both questions at once."""
    if value_range is None:
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            raise ValueError(_NOT_FINITE.format(name=name))
        return
    if values.numel() == 0:
        return
    found_low, found_high = torch.stack(torch.aminmax(values.detach())).tolist()
    if not (math.isfinite(found_low) and math.isfinite(found_high)):
        raise ValueError(_NOT_FINITE.format(name=name))
    low, high = value_range
    if found_low < low - RANGE_TOLERANCE or found_high > high + RANGE_TOLERANCE:
        raise ValueError(f"{name} lie in [{found_low:.3g}, {found_high:.3g}] but the model reads values in "
                         f"[{low:.3g}, {high:.3g}]" + (f": {hint}" if hint else "."))


def check_image_batch(pixel_values: torch.Tensor, channels: int, multiple: int, side: int | None = None,
                      value_range: tuple[float, float] | None = None, hint: str = "") -> None:
    """Raise a ValueError naming the problem unless `pixel_values` is a finite float (batch, channels, H, W) tensor
    with H and W divisible by `multiple` (and equal to `side` when the model needs one fixed size), whose values lie
    in `value_range` when one is given (`hint` says how to get there)."""
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
    check_values(pixel_values, "pixel_values", value_range, hint)


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


def check_token_ids(ids, name: str, vocab_size: int, max_length: int, attention_mask=None) -> None:
    """Raise a ValueError naming `name` unless `ids` is a (batch, tokens) integer tensor with at least one and at most
    `max_length` tokens (the position table's length) and every id in [0, `vocab_size`): an embedding lookup would
    otherwise fail deep inside the model (or, on GPU, with a device-side assert). An `attention_mask`, when given,
    must have the ids' shape, hold only 0/1 and leave each row at least one real token (a row attending to nothing
    gives NaN)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int32, torch.int64) or ids.ndim != 2:
        raise ValueError(f"{name} must be a (batch, tokens) integer tensor (the tokenizer's output), got "
                         f"{getattr(ids, 'dtype', type(ids).__name__)} of shape {tuple(getattr(ids, 'shape', ()))}.")
    if ids.shape[1] == 0:
        raise ValueError(f"{name} hold no tokens: pass non-empty text through the tokenizer.")
    if ids.shape[1] > max_length:
        raise ValueError(f"{name} have {ids.shape[1]} tokens but the model has positions for {max_length}: truncate "
                         "with the tokenizer (truncation=True) or cut the text into segments.")
    low, high = (int(v) for v in torch.aminmax(ids))
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size}) (the tokenizer of this model); got ids in "
                         f"[{low}, {high}]: was the text tokenised by another tokenizer?")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(ids.shape):
            raise ValueError(f"The attention mask of {name} has shape {tuple(getattr(attention_mask, 'shape', ()))} "
                             f"but {name} have {tuple(ids.shape)}: pass the mask the processor returned with them.")
        if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError(f"The attention mask of {name} must hold only 0 (padding) and 1 (token).")
        if bool((attention_mask.sum(1) == 0).any()):
            raise ValueError(f"A row of the attention mask of {name} has no real token: every text needs at least one.")


def check_class_labels(labels, name: str, shape: tuple[int, ...], num_classes: int, what: str,
                       ignore_index: int = -100) -> None:
    """Raise a ValueError naming `name` unless `labels` is an integer tensor of `shape` whose entries are class ids in
    [0, `num_classes`) or `ignore_index` (positions without a target); `what` names the classes in the message
    (e.g. "vokens"). Cross-entropy would otherwise fail inside the loss, or count a misaligned label silently."""
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be an integer tensor, got {getattr(labels, 'dtype', type(labels).__name__)}.")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{name} have shape {tuple(labels.shape)} but the tokens {tuple(shape)}: give one label per "
                         f"token ({ignore_index} where there is none), aligned with input_ids.")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        raise ValueError(f"{name} hold {int(labels[bad][0])}, outside [0, {num_classes}) ({num_classes} {what}); use "
                         f"{ignore_index} for positions without a target.")


def check_batch_sizes(sizes: dict[str, int], hint: str) -> None:
    """Raise a ValueError listing `sizes` ({what: count}, e.g. {"captions": 4, "images": 3}) unless every count is the
    same: inputs of one call are paired row by row. `hint` says what to pass instead."""
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Batch mismatch: {', '.join(f'{n} {what}' for what, n in sizes.items())}; {hint}")
