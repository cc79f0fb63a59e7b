"""Processor of the multimodal VAE: images and captions in, model inputs out; decoded images and generated caption
ids back to PIL images and text."""

from transformers import BatchFeature, PreTrainedTokenizerFast, ProcessorMixin

from ..modeling.inputs import check_batch_sizes
from .image_processing_autoencoders import AutoencoderImageProcessor
from .tokenization import SavedTokenizerRequired, train_caption_tokenizer, words_of


class MultimodalVAEImageProcessor(AutoencoderImageProcessor):
    """Images for the multimodal VAE: short side resized to `size`, centre-cropped to `crop_size` (32 x 32 by
    default), RGB, normalised to [-1, 1]; `postprocess` turns the model's [0, 1] images into PIL images. The
    package's image rules apply (`processing.image_processing`: transparency composited on white; 16-bit/float PIL
    modes, boolean arrays, integers outside 0-255, floats outside [0, 1] or with NaN raise a `ValueError`)."""

    @classmethod
    def for_size(cls, image_size: int) -> "MultimodalVAEImageProcessor":
        """The processor of a model that reads `image_size` x `image_size` images."""
        return cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


class MultimodalVAEProcessor(SavedTokenizerRequired, ProcessorMixin):
    """Turns images and captions into [`MultimodalVAEModel`] inputs (either or both, one example per row) and the
    model's outputs back.

    - `text` (a string or list of strings) → `input_ids`, `attention_mask` (int64, (batch, words); 1 = word): a
      word-level vocabulary of the training captions (lower-cased, punctuation dropped), no <bos>/<eos> (the model
      adds them), padded with <pad> to the longest caption. A caption longer than the tokenizer's `model_max_length`
      (the model's `max_text_length`) is cut with `truncation=True` and refused otherwise.
    - `images` → `pixel_values` (float32, (batch, 3, size, size), in [-1, 1]).
    - `batch_decode(ids)` → captions (special tokens dropped); `postprocess(images)` → PIL images.

    Raises `ValueError` for empty or blank captions, non-strings in `text`, words outside the vocabulary (the model
    would read them as <unk>, which it never saw: name them so the user can rephrase), paired inputs of different
    batch sizes, and nothing to process. `MultimodalVAEProcessor.for_captions(captions)` builds a fresh processor for
    a new run (builds the vocabulary).
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def for_captions(cls, captions, image_size: int = 32, max_text_length: int = 16) -> "MultimodalVAEProcessor":
        """A new processor whose vocabulary holds every word of `captions` (a non-empty list of strings), for captions
        of at most `max_text_length` words and `image_size` px images."""
        return cls(MultimodalVAEImageProcessor.for_size(image_size),
                   train_caption_tokenizer(captions, min_count=1, model_max_length=max_text_length))

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Each part loaded by its own class, so that a saved processor loads whether or not the image processor is
        registered with `AutoImageProcessor` yet."""
        hub = {key: kwargs[key] for key in ("cache_dir", "token", "revision", "local_files_only", "subfolder") if key in kwargs}
        return [MultimodalVAEImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub),
                PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **hub)]

    def config_kwargs(self) -> dict:
        """The [`MultimodalVAEConfig`] fields this processor fixes: vocabulary, special ids, caption length, image
        side."""
        tokenizer = self.tokenizer
        return {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                "max_text_length": tokenizer.model_max_length, "image_size": self.image_processor.crop_size["height"]}

    @property
    def vocabulary(self) -> set[str]:
        specials = set(self.tokenizer.all_special_tokens)
        return {word for word in self.tokenizer.get_vocab() if word not in specials}

    def __call__(self, text=None, images=None, return_tensors: str | None = "pt", truncation: bool = False) -> BatchFeature:
        data, sizes = {}, {}
        if text is not None:
            data.update(self._encode_text(text, truncation))
            sizes["captions"] = len(data["input_ids"])
        if images is not None:
            data["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"].numpy()
            sizes["images"] = len(data["pixel_values"])
        if not data:
            raise ValueError("Nothing to process: pass `text` and/or `images`.")
        check_batch_sizes(sizes, "paired inputs need one of each per example (process unpaired modalities in separate calls).")
        return BatchFeature(data, tensor_type=return_tensors)

    def _encode_text(self, text, truncation: bool) -> dict:
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)):
            raise ValueError(f"`text` is a {type(text).__name__}; pass a string or a list of strings.")
        if not texts:
            raise ValueError("`text` is an empty list; pass at least one caption.")
        vocabulary, limit = self.vocabulary, self.tokenizer.model_max_length
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise ValueError(f"`text`[{i}] is a {type(item).__name__}, not a string; pass images through `images=`.")
            words = words_of(item)
            if not words:
                raise ValueError(f"`text`[{i}] is {'empty' if not item else 'without words'}; every caption needs at "
                                 "least one word.")
            unknown = sorted(set(words) - vocabulary)
            if unknown:
                raise ValueError(f"`text`[{i}] ({item!r}) has words outside this model's vocabulary: {unknown}. Use "
                                 f"words it was trained on (e.g. {sorted(vocabulary)[:12]}).")
            if len(words) > limit and not truncation:
                raise ValueError(f"`text`[{i}] has {len(words)} words; the model reads at most {limit}. Shorten it or "
                                 "pass truncation=True.")
        encoded = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=limit,
                                 add_special_tokens=False, return_tensors="np")
        return {"input_ids": encoded["input_ids"].astype("int64"), "attention_mask": encoded["attention_mask"].astype("int64")}

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Token ids (e.g. `model.generate_text(z)`) → captions (special tokens dropped by default)."""
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    def postprocess(self, images, output_type: str = "pil"):
        """The model's [0, 1] images (`decode_image`, `image_reconstruction`) → PIL images (or "np" / "pt")."""
        return self.image_processor.postprocess(images, output_type=output_type)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


__all__ = ["MultimodalVAEImageProcessor", "MultimodalVAEProcessor"]
