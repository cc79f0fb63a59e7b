"""Processor of the Vokenizer matcher: sentences through a BERT tokenizer, images through ImageNet preprocessing."""

from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.image_utils import PILImageResampling

from ..modeling.inputs import check_batch_sizes
from .image_processing_autoencoders import AutoencoderImageProcessor
from .tokenization import SavedTokenizerRequired

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class VokenizerImageProcessor(AutoencoderImageProcessor):
    """Images for the matcher's CNN as the released code keys them: short side resized to 256 (bilinear), centre crop
    224 x 224, RGB, ImageNet mean/std normalisation. Inputs follow the package's image rules
    (`processing.image_processing`: transparency on white; 16-bit/float PIL modes, boolean arrays, integers outside
    0-255, floats outside [0, 1] or with NaN raise a `ValueError`)."""

    resample = PILImageResampling.BILINEAR
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    image_mean = IMAGENET_MEAN
    image_std = IMAGENET_STD

    @classmethod
    def for_size(cls, image_size: int) -> "VokenizerImageProcessor":
        """The processor of a model that reads `image_size` x `image_size` images (short side resized to
        `image_size`, then centre-cropped)."""
        return cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


class VokenizerProcessor(SavedTokenizerRequired, ProcessorMixin):
    """Turns sentences and/or images into [`VokenizerModel`] inputs.

    - `text` (a string or a list of strings) → `input_ids`, `attention_mask`, `token_type_ids` (int64, (batch,
      tokens)): `[CLS] sentence [SEP]` with the BERT tokenizer, padded to the longest (`padding=True`) or to
      `max_length`; longer sentences are cut to `max_length` (default: the tokenizer's `model_max_length`) with
      `truncation=True` and refused otherwise. The released matcher trained on captions of 20 word pieces.
    - `images` → `pixel_values` (float32, (batch, 3, size, size), ImageNet-normalised).

    The tokenizer must be a fast one (the vokenizer aligns vokens with character offsets). Raises `ValueError` for
    empty or blank sentences, non-strings in `text`, text and image batches of different sizes, and nothing to
    process; `TypeError` for a slow tokenizer.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        if tokenizer is not None and not getattr(tokenizer, "is_fast", False):
            raise TypeError(f"VokenizerProcessor needs a fast tokenizer (character offsets), got "
                            f"{type(tokenizer).__name__}.")
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Each part loaded by its own class, whether or not the image processor is registered yet."""
        hub = {key: kwargs[key] for key in ("cache_dir", "token", "revision", "local_files_only", "subfolder") if key in kwargs}
        return [VokenizerImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub),
                AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **hub)]

    def __call__(self, text=None, images=None, return_tensors: str | None = "pt", padding: bool | str = True,
                 truncation: bool = True, max_length: int | None = None) -> BatchFeature:
        data, sizes = {}, {}
        if text is not None:
            data.update(self._encode_text(text, padding, truncation, max_length))
            sizes["sentences"] = len(data["input_ids"])
        if images is not None:
            data["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"].numpy()
            sizes["images"] = len(data["pixel_values"])
        if not data:
            raise ValueError("Nothing to process: pass `text` and/or `images`.")
        check_batch_sizes(sizes, "paired inputs need one image per sentence (process unpaired inputs in separate calls).")
        return BatchFeature(data, tensor_type=return_tensors)

    def _encode_text(self, text, padding, truncation: bool, max_length: int | None) -> dict:
        texts = check_sentences(text)
        limit = max_length or self.tokenizer.model_max_length
        if not truncation:
            for i, ids in enumerate(self.tokenizer(texts)["input_ids"]):
                if len(ids) > limit:
                    raise ValueError(f"`text`[{i}] has {len(ids)} tokens with [CLS] and [SEP]; at most {limit} fit. "
                                     "Shorten it or pass truncation=True.")
        encoded = self.tokenizer(texts, padding="longest" if padding is True else padding, truncation=True,
                                 max_length=limit, return_tensors="np", return_token_type_ids=True)
        return {key: encoded[key].astype("int64") for key in ("input_ids", "attention_mask", "token_type_ids")}

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "token_type_ids", "pixel_values"]


def check_sentences(text) -> list[str]:
    """`text` as a non-empty list of non-blank strings, else a `ValueError` naming the offending item."""
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, (list, tuple)):
        raise ValueError(f"`text` is a {type(text).__name__}; pass a string or a list of strings.")
    if not texts:
        raise ValueError("`text` is an empty list; pass at least one sentence.")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise ValueError(f"`text`[{i}] is a {type(item).__name__}, not a string; pass images through `images=`.")
        if not item.strip():
            raise ValueError(f"`text`[{i}] is {'empty' if not item else 'blank'}; every sentence needs at least one word.")
    return list(texts)


__all__ = ["VokenizerImageProcessor", "VokenizerProcessor", "check_sentences"]
