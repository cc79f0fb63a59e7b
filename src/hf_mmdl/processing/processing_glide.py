"""Processor of GLIDE: captions → fixed-length token ids + mask, images → [-1, 1] pixels, edit masks → known-pixel
masks, and generated tensors back to PIL images."""

import warnings

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.image_utils import PILImageResampling

from .image_processing_autoencoders import AutoencoderImageProcessor


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


class GlideImageProcessor(AutoencoderImageProcessor):
    """Images for GLIDE: short side resized to `size`, centre-cropped, RGB, in [-1, 1] (64×64 by default), and edit
    masks (`preprocess_mask`): white = the region to repaint (diffusers' convention), returned as GLIDE's
    `inpaint_mask` with 1 on known pixels."""

    size = {"shortest_edge": 64}
    crop_size = {"height": 64, "width": 64}

    def preprocess_mask(self, masks) -> torch.Tensor:
        mask_processor = AutoencoderImageProcessor(
            image_mode="L", size=self.size, crop_size=self.crop_size, do_normalize=False, resample=PILImageResampling.NEAREST
        )
        return (mask_processor(images=masks)["pixel_values"] < 0.5).float()


class GlideProcessor(ProcessorMixin):
    """Turns captions, images and edit masks into [`GlideModel`] inputs and generated images back into PIL images.

    - `text` → `input_ids`, `attention_mask` of `text_ctx` tokens (empty string = unconditional).
    - `images` → `pixel_values` in [-1, 1]; `mask_images` → `inpaint_mask` (1 = known); `low_res_images` →
      `low_res` at `size / upsample_factor` (upsampler).
    Batch sizes must agree; empty lists, non-strings and over-long captions (with `truncation=False`) raise.
    """

    def __init__(self, image_processor=None, tokenizer=None, text_ctx: int = 128, upsample_factor: int = 4, **kwargs):
        self.text_ctx = text_ctx
        self.upsample_factor = upsample_factor
        super().__init__(image_processor, tokenizer, **kwargs)

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
        if images is not None:
            data["pixel_values"] = self.image_processor(images=images)["pixel_values"]
            sizes["images"] = len(data["pixel_values"])
        if mask_images is not None:
            data["inpaint_mask"] = self.image_processor.preprocess_mask(mask_images)
            sizes["masks"] = len(data["inpaint_mask"])
        if low_res_images is not None:
            side = self.image_processor.crop_size["height"] // self.upsample_factor
            low = AutoencoderImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
            data["low_res"] = low(images=low_res_images)["pixel_values"]
            sizes["low-resolution images"] = len(data["low_res"])
        if not data:
            raise ValueError("Nothing to process: pass `text`, `images`, `mask_images` and/or `low_res_images`.")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Batch mismatch: {', '.join(f'{n} {what}' for what, n in sizes.items())}; pass one of each per example.")
        return BatchFeature(data, tensor_type=return_tensors)

    def postprocess(self, images: torch.Tensor, output_type: str = "pil"):
        """[-1, 1] samples (what `GlideModel` trains on) → PIL images (or `"np"` / `"pt"` in [0, 1])."""
        return self.image_processor.postprocess((images + 1) / 2, output_type=output_type)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "inpaint_mask", "low_res"]


__all__ = ["GlideImageProcessor", "GlideProcessor", "encode_captions"]
