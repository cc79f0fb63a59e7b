"""Processor of data2vec-multimodal: captions, images and waveforms in, the model's inputs for each modality out."""

from transformers import BatchFeature, PreTrainedTokenizerFast, ProcessorMixin, Wav2Vec2FeatureExtractor

from ..modeling.inputs import check_batch_sizes
from .audio_processing import validate_audio
from .image_processing_autoencoders import AutoencoderImageProcessor
from .tokenization import SavedTokenizerRequired, train_byte_level_bpe

SAMPLING_RATE = 16_000


class Data2VecMultimodalImageProcessor(AutoencoderImageProcessor):
    """Images for data2vec-multimodal: short side resized to `size`, centre-cropped to `crop_size` (32 x 32 by
    default), RGB, normalised with mean = std = 0.5 to [-1, 1]. Inputs follow the package's image rules
    (`processing.image_processing`: transparency composited on white; 16-bit/float PIL modes, boolean arrays,
    integers outside 0-255, floats outside [0, 1] or with NaN raise a `ValueError`)."""

    @classmethod
    def for_size(cls, image_size: int) -> "Data2VecMultimodalImageProcessor":
        """The processor of a model that reads `image_size` x `image_size` images."""
        return cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def audio_feature_extractor(sampling_rate: int = SAMPLING_RATE) -> Wav2Vec2FeatureExtractor:
    """wav2vec2's feature extractor as data2vec-audio reads waveforms: mono, zero mean and unit variance per clip
    (over its real samples), zero-padded, with an attention mask."""
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


class Data2VecMultimodalProcessor(SavedTokenizerRequired, ProcessorMixin):
    """Turns captions, images and waveforms into [`Data2VecMultimodalModel`] inputs, for any of the three
    modalities or several paired ones (one example per row in each).

    - `text` (a string or list of strings) → `input_ids`, `attention_mask` (int64, (batch, tokens); 1 = real
      token): `<s> caption </s>` with a byte-level BPE, padded with `<pad>` to the longest caption (`padding=True`)
      or to `max_length` (`padding="max_length"`). Captions longer than `max_length` (default: the tokenizer's
      `model_max_length`) are cut with `truncation=True` (keeping `</s>`) and refused otherwise. `padding`,
      `truncation` and `max_length` concern text only.
    - `images` → `pixel_values` (float32, (batch, 3, size, size), in [-1, 1]); the package's image rules apply.
    - `audio` (a 1-D waveform or a list of them at 16 kHz, or `{"array", "sampling_rate"}` dicts as datasets'
      `Audio` decodes them) → `input_values` (float32, (batch, samples), each clip
      zero-mean/unit-variance over its real samples, zero-padded to the longest, never cut) and `audio_attention_mask`
      (int64; 1 = real sample). Named apart from the text mask so that a text + audio batch carries both. The audio
      rules (`processing.audio_processing`): mono 1-D clips, floats or int16/int32 PCM (scaled by full scale),
      no empty, silent, NaN or infinite clips, `sampling_rate` equal to 16 kHz (missing: assumed, with a warning, as
      transformers' feature extractors do).

    Raises `ValueError` for empty or blank captions, non-strings in `text` (an image or waveform passed as text),
    paired inputs of different batch sizes, and nothing to process.
    `Data2VecMultimodalProcessor.for_texts(captions)` builds a fresh processor for a new run (trains the tokenizer).
    """

    def __init__(self, image_processor=None, tokenizer=None, feature_extractor=None, **kwargs):
        super().__init__(image_processor, tokenizer, feature_extractor, **kwargs)

    @classmethod
    def for_texts(cls, texts, image_size: int = 32, vocab_size: int = 1000, model_max_length: int = 64,
                  sampling_rate: int = SAMPLING_RATE) -> "Data2VecMultimodalProcessor":
        """A new processor: a byte-level BPE of `vocab_size` trained on `texts` (`train_byte_level_bpe`) for captions
        of at most `model_max_length` tokens, `image_size` px images and `sampling_rate` Hz audio."""
        return cls(Data2VecMultimodalImageProcessor.for_size(image_size),
                   train_byte_level_bpe(texts, vocab_size=vocab_size, model_max_length=model_max_length),
                   audio_feature_extractor(sampling_rate))

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Each part loaded by its own class, so that a saved processor loads whether or not the image processor is
        registered with `AutoImageProcessor` yet."""
        hub = {key: kwargs[key] for key in ("cache_dir", "token", "revision", "local_files_only", "subfolder") if key in kwargs}
        return [
            Data2VecMultimodalImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub),
            PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **hub),
            Wav2Vec2FeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub),
        ]

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(self, text=None, images=None, audio=None, sampling_rate: int | None = None,
                 return_tensors: str | None = "pt", padding: bool | str = True, truncation: bool = True,
                 max_length: int | None = None) -> BatchFeature:
        data, sizes = {}, {}
        if text is not None:
            data.update(self._encode_text(text, padding, truncation, max_length))
            sizes["captions"] = len(data["input_ids"])
        if images is not None:
            data["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"].numpy()
            sizes["images"] = len(data["pixel_values"])
        if audio is not None:
            clips = validate_audio(audio, sampling_rate, self.sampling_rate)
            # Always to the longest clip: clips are never cut, and ragged clips cannot form one tensor.
            features = self.feature_extractor(clips, sampling_rate=self.sampling_rate, padding="longest",
                                              return_attention_mask=True, return_tensors="np")
            data["input_values"] = features["input_values"].astype("float32")
            data["audio_attention_mask"] = features["attention_mask"].astype("int64")
            sizes["audio clips"] = len(clips)
        if not data:
            raise ValueError("Nothing to process: pass `text`, `images` and/or `audio`.")
        check_batch_sizes(sizes, "paired inputs need one of each per example (process unpaired modalities in separate calls).")
        return BatchFeature(data, tensor_type=return_tensors)

    def _encode_text(self, text, padding, truncation: bool, max_length: int | None) -> dict:
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)):
            raise ValueError(f"`text` is a {type(text).__name__}; pass a string or a list of strings.")
        if not texts:
            raise ValueError("`text` is an empty list; pass at least one caption.")
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise ValueError(f"`text`[{i}] is a {type(item).__name__}, not a string; pass images through `images=` "
                                 "and waveforms through `audio=`.")
            if not item.strip():
                raise ValueError(f"`text`[{i}] is {'empty' if not item else 'blank'}; every caption needs at least one "
                                 "word.")
        limit = max_length or self.tokenizer.model_max_length
        if not truncation:
            for i, ids in enumerate(self.tokenizer(list(texts))["input_ids"]):
                if len(ids) > limit:
                    raise ValueError(f"`text`[{i}] has {len(ids)} tokens with <s> and </s>; at most {limit} fit. Shorten it "
                                     "or pass truncation=True.")
        encoded = self.tokenizer(list(texts), padding="longest" if padding is True else padding, truncation=True,
                                 max_length=limit, return_tensors="np")
        return {"input_ids": encoded["input_ids"].astype("int64"), "attention_mask": encoded["attention_mask"].astype("int64")}

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Token ids → captions (special tokens dropped by default)."""
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "input_values", "audio_attention_mask"]


__all__ = ["Data2VecMultimodalImageProcessor", "Data2VecMultimodalProcessor", "audio_feature_extractor"]
