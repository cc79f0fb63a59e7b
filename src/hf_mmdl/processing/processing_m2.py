"""Processor of the M² captioner: images (or precomputed detector regions) and captions in, captions out."""

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling

from .image_processing import flatten_transparency, validate_images
from .tokenization import SavedTokenizerRequired


class M2ImageProcessor(PilBackend):
    """Resizes, rescales and normalises images for an M² model with a grid backbone, and pads/truncates precomputed
    region features (the paper's detector features) to `max_regions` with a mask. `region_feature_dim=None` is the
    processor of a model that reads images through a backbone: it refuses region features.

    Grey, palette, RGBA (composited on white) and CMYK images are converted to RGB. Inputs follow the package's
    image rules (`processing.image_processing`): other PIL modes, boolean arrays, integer arrays outside 0–255 and
    float arrays outside [0, 1] or with NaN raise a `ValueError`; so do NaN or infinite region features."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, max_regions: int = 50, region_feature_dim: int | None = 2048, **kwargs):
        super().__init__(**kwargs)
        self.max_regions = max_regions
        self.region_feature_dim = region_feature_dim

    def preprocess(self, images, *args, **kwargs) -> BatchFeature:
        return super().preprocess([flatten_transparency(image) for image in validate_images(images)], *args, **kwargs)

    def pad_region_features(self, region_features, truncation: bool = True) -> BatchFeature:
        """Stack per-image region features of shape (regions_i, region_feature_dim) into `region_features` of shape
        (batch, max_regions, dim), zero-padded, plus a `region_attention_mask` (1 = real region). Images with more
        than `max_regions` regions keep their first `max_regions` (as the original code does), unless
        `truncation=False`, which raises instead. A processor with `region_feature_dim=None` (a backbone model's)
        raises a `ValueError`."""
        if self.region_feature_dim is None:
            raise ValueError(
                "This processor belongs to an M² model that reads images through a backbone (region_feature_dim=None): "
                "pass `images`, or use the processor of a model built for detector region features."
            )
        if isinstance(region_features, (np.ndarray, torch.Tensor)) and region_features.ndim == 2:
            region_features = [region_features]
        region_features = [np.asarray(f.detach().cpu() if hasattr(f, "detach") else f, dtype=np.float32) for f in region_features]
        if not region_features:
            raise ValueError("region_features is empty: pass one (regions, dim) array per image.")
        batch = np.zeros((len(region_features), self.max_regions, self.region_feature_dim), dtype=np.float32)
        mask = np.zeros((len(region_features), self.max_regions), dtype=np.int64)
        for i, features in enumerate(region_features):
            if features.ndim != 2 or features.shape[1] != self.region_feature_dim:
                raise ValueError(
                    f"region_features[{i}] has shape {features.shape}; expected (regions, {self.region_feature_dim}). "
                    "Use features from the same extractor the model was trained on, or a processor with a matching "
                    "region_feature_dim."
                )
            if features.shape[0] == 0:
                raise ValueError(f"region_features[{i}] has no regions; every image needs at least one.")
            if not np.isfinite(features).all():
                raise ValueError(f"region_features[{i}] contains NaN or infinite values.")
            if features.shape[0] > self.max_regions and not truncation:
                raise ValueError(
                    f"region_features[{i}] has {features.shape[0]} regions, more than max_regions={self.max_regions}; "
                    "pass truncation=True to keep the first ones."
                )
            kept = features[: self.max_regions]
            batch[i, : len(kept)] = kept
            mask[i, : len(kept)] = 1
        return BatchFeature({"region_features": batch, "region_attention_mask": mask})


class M2Processor(SavedTokenizerRequired, ProcessorMixin):
    """Turns images (or region features) and captions into M² inputs, and generated ids back into captions.

    - `images` → `pixel_values`; `region_features` → `region_features` + `region_attention_mask`.
    - `text` is an optional caption prefix for generation (`""` = plain captioning, as the `image-text-to-text`
      pipeline asks for one): `decoder_input_ids` = <bos> + prefix words.
    - `text_target` are training captions: `labels` = words + <eos>, padded with -100.

    Captions are lower-cased and stripped of punctuation by the word-level tokenizer; captions longer than the
    model's position table raise a `ValueError` unless `truncation=True`.

    Example:

    ```python
    >>> processor = AutoProcessor.from_pretrained("hf_mmdl_quickstart/m2")
    >>> model = AutoModelForImageTextToText.from_pretrained("hf_mmdl_quickstart/m2")
    >>> inputs = processor(images=image, return_tensors="pt")
    >>> processor.batch_decode(model.generate(**inputs), skip_special_tokens=True)
    ```
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    @property
    def max_caption_length(self) -> int:
        """Longest caption in words; the position table also holds <bos> (or <eos>)."""
        return self.tokenizer.model_max_length - 1

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        region_features=None,
        text_target: str | list[str] | None = None,
        truncation: bool = False,
        padding: bool | str = True,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """`padding` is accepted for pipeline compatibility: caption batches are always padded to the longest."""
        if images is not None and region_features is not None:
            raise ValueError("Pass either `images` or `region_features`, not both.")
        data, batch_size = {}, None
        if images is not None:
            data.update(self.image_processor(images, return_tensors="np", **kwargs))
            batch_size = len(data["pixel_values"])
        elif region_features is not None:
            data.update(self.image_processor.pad_region_features(region_features, truncation=True))
            batch_size = len(data["region_features"])
        if text is not None:
            data["decoder_input_ids"] = self._encode_prefixes(self._as_list(text, "text", allow_empty=True), truncation)
            batch_size = self._check_batch(batch_size, len(data["decoder_input_ids"]), "text prompts")
        if text_target is not None:
            data["labels"] = self._encode_targets(self._as_list(text_target, "text_target"), truncation)
            self._check_batch(batch_size, len(data["labels"]), "captions")
        if not data:
            raise ValueError("Nothing to process: pass `images` or `region_features`, and/or `text_target`.")
        return BatchFeature(data, tensor_type=return_tensors)

    @staticmethod
    def _as_list(text, name: str, allow_empty: bool = False) -> list[str]:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError(f"`{name}` is an empty list.")
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise ValueError(f"`{name}`[{i}] is a {type(item).__name__}, not a string.")
            if not allow_empty and not item.strip():
                raise ValueError(f"`{name}`[{i}] is empty; every caption needs at least one word.")
        return texts

    @staticmethod
    def _check_batch(batch_size: int | None, count: int, what: str) -> int:
        if batch_size is not None and batch_size != count:
            raise ValueError(f"Batch mismatch: {batch_size} images but {count} {what}; pass one per image.")
        return count

    def _words_to_ids(self, texts: list[str], truncation: bool) -> list[list[int]]:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        for i, ids in enumerate(encoded):
            if len(ids) > self.max_caption_length:
                if not truncation:
                    raise ValueError(
                        f"Caption {i} has {len(ids)} words; this model handles at most {self.max_caption_length}. "
                        "Shorten it or pass truncation=True."
                    )
                encoded[i] = ids[: self.max_caption_length]
        return encoded

    def _encode_prefixes(self, texts: list[str], truncation: bool) -> np.ndarray:
        encoded = self._words_to_ids(texts, truncation)
        if len({len(ids) for ids in encoded}) > 1:
            raise ValueError(
                "Caption prefixes in one batch must have the same number of words (got "
                f"{sorted({len(ids) for ids in encoded})}); caption such images in separate calls."
            )
        return np.array([[self.tokenizer.bos_token_id] + ids for ids in encoded], dtype=np.int64)

    def _encode_targets(self, texts: list[str], truncation: bool) -> np.ndarray:
        encoded = [ids + [self.tokenizer.eos_token_id] for ids in self._words_to_ids(texts, truncation)]
        labels = np.full((len(encoded), max(map(len, encoded))), -100, dtype=np.int64)
        for i, ids in enumerate(encoded):
            labels[i, : len(ids)] = ids
        return labels

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Generated ids (with <bos>/<eos>/<pad>) → caption strings, cut at the first <eos>."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        eos = self.tokenizer.eos_token_id
        cut = [ids[: ids.index(eos)] if eos in ids else ids for ids in sequences]
        return self.tokenizer.batch_decode(cut, skip_special_tokens=skip_special_tokens, **kwargs)

    def decode(self, ids, skip_special_tokens: bool = True, **kwargs) -> str:
        return self.batch_decode([ids.tolist() if hasattr(ids, "tolist") else ids], skip_special_tokens, **kwargs)[0]

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """What the `image-text-to-text` pipeline calls to turn generated ids into text."""
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "region_features", "region_attention_mask", "decoder_input_ids", "labels"]


__all__ = ["M2ImageProcessor", "M2Processor"]
