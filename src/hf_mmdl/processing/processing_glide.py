"""Processor of GLIDE: captions → fixed-length token ids + mask, images → [-1, 1] pixels, edit masks → known-pixel
masks, and generated tensors back to PIL images. The GLIDE pipelines hold one and read every input through it."""

import warnings

import numpy as np
import PIL.Image
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.image_utils import PILImageResampling
from transformers.utils import cached_file

from ..modeling.inputs import check_batch_sizes
from .image_processing import has_transparency, validate_images
from .image_processing_autoencoders import OUTPUT_TYPES, AutoencoderImageProcessor
from .tokenization import SavedTokenizerRequired


def encode_captions(tokenizer, captions: list[str], text_ctx: int, pad_token_id: int, truncation: bool = True):
    """GLIDE's caption encoding: lower-cased, no BOS/EOS, padded with `pad_token_id` to `text_ctx` tokens (mask 0);
    the empty caption is all padding. Longer captions are cut to `text_ctx` tokens with a warning, or raise a
    `ValueError` when `truncation=False`. Returns (input_ids, attention_mask) int64 arrays."""
    rows = []
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise ValueError(f"Caption {i} is a {type(caption).__name__}, not a string.")
        ids = tokenizer(caption.lower(), add_special_tokens=False)["input_ids"] if caption.strip() else []
        if len(ids) > text_ctx:
            if not truncation:
                raise ValueError(f"Caption {i} has {len(ids)} tokens; the model reads at most {text_ctx}. Shorten it "
                                 "or pass truncation=True.")
            warnings.warn(f"Caption {i} has {len(ids)} tokens; keeping the first {text_ctx}.", stacklevel=3)
            ids = ids[:text_ctx]
        rows.append(ids)
    input_ids = np.full((len(rows), text_ctx), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), text_ctx), dtype=np.int64)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)], mask[i, : len(ids)] = ids, 1
    return input_ids, mask


def masks_as_grey(masks):
    """Edit masks whose values are not grey levels → uint8 0/255 masks of the same shape, so that they read like
    black-and-white images: boolean arrays and tensors (True = repaint), and integer arrays, tensors or PIL "L"
    images whose values are all 0 or 1 (1 = repaint; read as grey levels they would be almost black, i.e. repaint
    nothing). Anything else, a list's items included, is returned as is."""
    if isinstance(masks, (list, tuple)):
        return [masks_as_grey(mask) for mask in masks]
    if isinstance(masks, torch.Tensor) and (masks.dtype == torch.bool or _is_zero_one(masks)):
        return masks.to(torch.uint8) * 255
    if isinstance(masks, np.ndarray) and (masks.dtype == bool or _is_zero_one(masks)):
        return masks.astype(np.uint8) * 255
    if isinstance(masks, PIL.Image.Image) and masks.mode == "L" and masks.getextrema()[1] <= 1:
        return masks.point(lambda value: value * 255)
    return masks


def _is_zero_one(mask) -> bool:
    """Whether `mask` is a non-empty integer array or tensor whose values all lie in {0, 1}."""
    if isinstance(mask, torch.Tensor):
        integer, empty = not (mask.is_floating_point() or mask.is_complex()), mask.numel() == 0
    else:
        integer, empty = np.issubdtype(mask.dtype, np.integer), mask.size == 0
    return integer and not empty and bool(mask.min() >= 0) and bool(mask.max() <= 1)


def quantize_to_8_bits(pixel_values: torch.Tensor) -> torch.Tensor:
    """[-1, 1] pixels rounded to the 256 levels of an 8-bit image, as GLIDE's upsampler saw them in training."""
    return ((pixel_values + 1) * 127.5).round() / 127.5 - 1


class GlideImageProcessor(AutoencoderImageProcessor):
    """Images for GLIDE: short side resized to `size`, centre-cropped, RGB, in [-1, 1] (64×64 by default), and edit
    masks (`preprocess_mask`)."""

    size = {"shortest_edge": 64}
    crop_size = {"height": 64, "width": 64}

    def preprocess_mask(self, masks, image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Edit masks → GLIDE's `inpaint_mask` of shape (batch, 1, height, width), 1 on KNOWN pixels (GLIDE §4.3
        feeds the model the known region). The package decides mask polarity here and nowhere else: white, True or
        1 marks the region to REPAINT (diffusers' convention). Accepted per mask:

        - a PIL image or a uint8 array or tensor of grey levels 0–255 (≥ 128 = repaint);
        - a bool array or tensor (True = repaint);
        - an integer array or tensor, or a PIL "L" image, whose values are all 0 or 1 (1 = repaint; see
          `masks_as_grey`);
        - a float array or tensor in [0, 1] (≥ 0.5 = repaint).

        A list of them, or a 4-D stack, is a batch. Each mask is resized with NEAREST and centre-cropped to the crop
        size, as its image is. `image_sizes` are the (width, height) of the images the masks go with (the
        processor passes them when given both): a mask of another size is refused rather than stretched, and so is
        a different number of masks and images.

        Raises a `ValueError` for what the image rules refuse (`processing.image_processing`), for masks with
        transparency (a painted layer: pass its alpha, `layer.getchannel("A")`, as the mask), and for a mask that
        marks nothing to repaint once resized (all black: the edit would return the image unchanged).
        """
        checked = validate_images(masks_as_grey(masks))
        for i, mask in enumerate(checked):
            if has_transparency(mask):
                raise ValueError(f"Mask {i} has transparency ({mask.mode}), which a mask cannot mean; pass a grey "
                                 "mask (white = repaint) or, for a painted layer, its alpha: `layer.getchannel('A')`.")
        if image_sizes is not None:
            if len(image_sizes) != len(checked):
                raise ValueError(f"Got {len(image_sizes)} images but {len(checked)} masks; pass one mask per image.")
            for i, (mask, size) in enumerate(zip(checked, image_sizes)):
                if mask.size != tuple(size):
                    raise ValueError(f"Mask {i} is {mask.width}×{mask.height} but its image is {size[0]}×{size[1]}; "
                                     "draw the mask at the image's size (masks are not resized to fit).")
        mask_processor = AutoencoderImageProcessor(
            image_mode="L", size=self.size, crop_size=self.crop_size, do_normalize=False, resample=PILImageResampling.NEAREST
        )
        repaint = mask_processor(images=checked)["pixel_values"] >= 0.5
        for i, region in enumerate(repaint):
            if not region.any():
                height, width = region.shape[-2:]
                raise ValueError(f"Mask {i} covers none of the model's {height}×{width} pixels, so there is nothing to "
                                 "repaint: white, True or 1 marks the region to repaint (a small region can vanish "
                                 "when the mask is resized to the model's size; mark a larger one).")
        return (~repaint).float()


# The pipeline component that holds the processor (diffusers names component folders after the attribute).
PIPELINE_PROCESSOR_FOLDER = "processor"


class GlideProcessor(SavedTokenizerRequired, ProcessorMixin):
    """Turns captions, images and edit masks into [`GlideModel`] inputs and generated images back into PIL images.

    - `text` → `input_ids`, `attention_mask` of `text_ctx` tokens (empty string = unconditional).
    - `images` → `pixel_values` in [-1, 1]; `mask_images` (white / True / 1 = repaint) → `inpaint_mask` (1 =
      known), each mask of its image's size (`GlideImageProcessor.preprocess_mask` gives the rules);
      `low_res_images` → `low_res` at `size / upsample_factor`, quantised to 8 bits (upsampler).
    Images follow the package's image rules (`processing.image_processing`). Batch sizes must agree; empty lists,
    non-strings and over-long captions (with `truncation=False`) raise.
    `GlideProcessor.for_config(config, tokenizer)` builds the processor that fits a [`GlideConfig`].
    """

    def __init__(self, image_processor=None, tokenizer=None, text_ctx: int = 128, upsample_factor: int = 4, **kwargs):
        self.text_ctx = text_ctx
        self.upsample_factor = upsample_factor
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "GlideProcessor":
        """Load a saved processor; a GLIDE pipeline folder (with `model_index.json`, local or on the Hub) is read from
        its `processor/` component, so `AutoProcessor.from_pretrained(pipeline_folder)` works as on the component
        folder (the pipeline writes a root `processor_config.json` naming this class for AutoProcessor)."""
        if not kwargs.get("subfolder"):
            hub = {key: kwargs[key] for key in ("cache_dir", "token", "revision", "local_files_only") if key in kwargs}
            index = cached_file(pretrained_model_name_or_path, "model_index.json", _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False, _raise_exceptions_for_gated_repo=False, **hub)
            if index is not None:
                kwargs["subfolder"] = PIPELINE_PROCESSOR_FOLDER
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def for_config(cls, config, tokenizer) -> "GlideProcessor":
        """The processor a [`GlideConfig`] reads: images of its `image_size`, captions of its `text_ctx` tokens, and
        (upsampler) low-resolution inputs `upsample_factor` times smaller."""
        side = config.image_size
        image_processor = GlideImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        return cls(image_processor, tokenizer, text_ctx=config.text_config.text_ctx, upsample_factor=config.upsample_factor)

    def __call__(self, text=None, images=None, mask_images=None, low_res_images=None, truncation: bool = True,
                 return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        data, sizes = {}, {}
        if text is not None:
            captions = [text] if isinstance(text, str) else list(text)
            if not captions:
                raise ValueError("`text` is an empty list.")
            pad = self.tokenizer.pad_token_id
            data["input_ids"], data["attention_mask"] = encode_captions(self.tokenizer, captions, self.text_ctx, pad, truncation)
            sizes["captions"] = len(captions)
        image_sizes = None
        if images is not None:
            images = validate_images(images)
            image_sizes = [image.size for image in images]
            data["pixel_values"] = self.image_processor(images=images)["pixel_values"]
            sizes["images"] = len(data["pixel_values"])
        if mask_images is not None:
            # With images, each mask must match its image's size (preprocess_mask refuses others).
            data["inpaint_mask"] = self.image_processor.preprocess_mask(mask_images, image_sizes)
            sizes["masks"] = len(data["inpaint_mask"])
        if low_res_images is not None:
            side = self.image_processor.crop_size["height"] // self.upsample_factor
            low = AutoencoderImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
            data["low_res"] = quantize_to_8_bits(low(images=low_res_images)["pixel_values"])
            sizes["low-resolution images"] = len(data["low_res"])
        if not data:
            raise ValueError("Nothing to process: pass `text`, `images`, `mask_images` and/or `low_res_images`.")
        check_batch_sizes(sizes, "pass one of each per example.")
        return BatchFeature(data, tensor_type=return_tensors)

    def postprocess(self, images: torch.Tensor, output_type: str = "pil"):
        """[-1, 1] samples of shape (batch, 3, height, width) (what `GlideModel` trains on) → images in diffusers'
        pipeline output types: a list of PIL images (`"pil"`), a float32 (batch, height, width, 3) array in [0, 1]
        (`"np"`), or the (batch, 3, height, width) tensor in [0, 1] on the samples' device (`"pt"`). Another
        `output_type` raises a `ValueError`."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        images = ((images.float() + 1) / 2).clamp(0, 1)
        if output_type == "pt":
            return images
        if output_type == "pil":
            return self.image_processor.postprocess(images, output_type="pil")
        return images.permute(0, 2, 3, 1).cpu().numpy()

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "inpaint_mask", "low_res"]


__all__ = ["GlideImageProcessor", "GlideProcessor", "encode_captions"]
