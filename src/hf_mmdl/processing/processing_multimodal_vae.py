"""Processor of the multimodal VAE: images, captions and spoken captions in, model inputs out; decoded images and
generated caption ids back to PIL images and text."""

from transformers import BatchFeature, PreTrainedTokenizerFast, ProcessorMixin, WhisperFeatureExtractor

from ..modeling.inputs import check_batch_sizes
from .audio_processing import validate_audio
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


SAMPLING_RATE = 16_000
# Log-mel frames of spoken captions: 32 mel bins, a 62.5 ms window every 31.25 ms (1,000 / 500 samples at 16 kHz),
# clips up to 3 s (a 7-word scene caption spoken at 150 words per minute lasts 2.3 s), so 96 frames.
AUDIO_FEATURES = dict(feature_size=32, sampling_rate=SAMPLING_RATE, n_fft=1000, hop_length=500, chunk_length=3)


def log_mel_feature_extractor(**overrides) -> WhisperFeatureExtractor:
    """transformers' Whisper feature extractor at the multimodal VAE's size (`AUDIO_FEATURES`, changed by
    `overrides`): log10 mel power over a Hann-windowed STFT, floored 8 decades below each clip's peak and scaled by
    (x + 4) / 4, each clip zero-padded to `chunk_length` seconds, giving (mel bins, chunk_length · rate / hop) frames."""
    return WhisperFeatureExtractor(**(AUDIO_FEATURES | overrides))


class MultimodalVAEProcessor(SavedTokenizerRequired, ProcessorMixin):
    """Turns images, captions and spoken captions into [`MultimodalVAEModel`] inputs (any of them, one example per
    row) and the model's outputs back.

    - `text` (a string or list of strings) → `input_ids`, `attention_mask` (int64, (batch, words); 1 = word): a
      word-level vocabulary of the training captions (lower-cased, punctuation dropped), no <bos>/<eos> (the model
      adds them), padded with <pad> to the longest caption. A caption longer than the tokenizer's `model_max_length`
      (the model's `max_text_length`) is cut with `truncation=True` and refused otherwise.
    - `images` → `pixel_values` (float32, (batch, 3, size, size), in [-1, 1]).
    - `audio` (a 1-D 16 kHz waveform or a list of them, or `{"array", "sampling_rate"}` dicts as datasets' `Audio`
      decodes them) → `input_features` (float32, (batch, mel bins, frames)): log-mel frames from transformers'
      `WhisperFeatureExtractor` (`log_mel_feature_extractor`), each clip zero-padded to the extractor's
      `chunk_length` seconds. The package's audio rules apply (`processing.audio_processing`: mono 1-D clips,
      floats or int16/int32 PCM, no empty, silent, NaN or infinite clips, `sampling_rate` equal to 16 kHz); a clip
      longer than `chunk_length` seconds is refused, never cut. Only models with `audio_modality` read them.
    - `batch_decode(ids)` → captions (special tokens dropped); `postprocess(images)` → PIL images.

    Raises `ValueError` for empty or blank captions, non-strings in `text`, words outside the vocabulary (the model
    would read them as <unk>, which it never saw: name them so the user can rephrase), paired inputs of different
    batch sizes, and nothing to process. `MultimodalVAEProcessor.for_captions(captions)` builds a fresh processor for
    a new run (builds the vocabulary). A processor saved before audio existed loads with the default extractor.
    """

    def __init__(self, image_processor=None, tokenizer=None, feature_extractor=None, **kwargs):
        super().__init__(image_processor, tokenizer,
                         log_mel_feature_extractor() if feature_extractor is None else feature_extractor, **kwargs)

    @classmethod
    def for_captions(cls, captions, image_size: int = 32, max_text_length: int = 16,
                     max_audio_seconds: int = AUDIO_FEATURES["chunk_length"]) -> "MultimodalVAEProcessor":
        """A new processor whose vocabulary holds every word of `captions` (a non-empty list of strings), for captions
        of at most `max_text_length` words, `image_size` px images and spoken captions of at most `max_audio_seconds`
        (a whole number ≥ 1: 32 log-mel frames per second)."""
        if not isinstance(max_audio_seconds, int) or max_audio_seconds < 1:
            raise ValueError(f"max_audio_seconds must be a whole number of seconds ≥ 1, got {max_audio_seconds!r}.")
        return cls(MultimodalVAEImageProcessor.for_size(image_size),
                   train_caption_tokenizer(captions, min_count=1, model_max_length=max_text_length),
                   log_mel_feature_extractor(chunk_length=max_audio_seconds))

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Each part loaded by its own class, so that a saved processor loads whether or not the image processor is
        registered with `AutoImageProcessor` yet."""
        hub = {key: kwargs[key] for key in ("cache_dir", "token", "revision", "local_files_only", "subfolder") if key in kwargs}
        # Saved before audio existed: no feature extractor in the folder, the default one (what `__init__` gives).
        saved_audio = processor_dict is not None and "feature_extractor" in processor_dict
        return [MultimodalVAEImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub),
                PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **hub),
                WhisperFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub) if saved_audio
                else log_mel_feature_extractor()]

    def config_kwargs(self) -> dict:
        """The [`MultimodalVAEConfig`] fields this processor fixes: vocabulary, special ids, caption length, image
        side, and the shape of its audio features."""
        tokenizer, extractor = self.tokenizer, self.feature_extractor
        return {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                "max_text_length": tokenizer.model_max_length, "image_size": self.image_processor.crop_size["height"],
                "audio_num_mel_bins": extractor.feature_size, "audio_num_frames": extractor.nb_max_frames}

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def vocabulary(self) -> set[str]:
        specials = set(self.tokenizer.all_special_tokens)
        return {word for word in self.tokenizer.get_vocab() if word not in specials}

    def __call__(self, text=None, images=None, audio=None, sampling_rate: int | None = None,
                 return_tensors: str | None = "pt", truncation: bool = False) -> BatchFeature:
        data, sizes = {}, {}
        if text is not None:
            data.update(self._encode_text(text, truncation))
            sizes["captions"] = len(data["input_ids"])
        if images is not None:
            data["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"].numpy()
            sizes["images"] = len(data["pixel_values"])
        if audio is not None:
            data["input_features"] = self._encode_audio(audio, sampling_rate)
            sizes["audio clips"] = len(data["input_features"])
        if not data:
            raise ValueError("Nothing to process: pass `text`, `images` and/or `audio`.")
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

    @property
    def max_audio_samples(self) -> int:
        """The most samples a clip may have (`chunk_length` seconds at 16 kHz)."""
        return self.feature_extractor.n_samples

    def _encode_audio(self, audio, sampling_rate: int | None):
        clips = validate_audio(audio, sampling_rate, self.sampling_rate)
        extractor = self.feature_extractor
        for index, clip in enumerate(clips):
            if len(clip) > extractor.n_samples:
                raise ValueError(f"Audio clip {index} lasts {len(clip) / self.sampling_rate:.2f} s; this processor reads "
                                 f"at most {extractor.chunk_length} s (longer clips would be cut). Trim the silence or "
                                 "split the clip.")
        features = extractor(clips, sampling_rate=self.sampling_rate, padding="max_length", return_tensors="np")
        return features["input_features"].astype("float32")

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Token ids (e.g. `model.generate_text(z)`) → captions (special tokens dropped by default)."""
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    def postprocess(self, images, output_type: str = "pil"):
        """The model's [0, 1] images (`decode_image`, `image_reconstruction`) → PIL images (or "np" / "pt")."""
        return self.image_processor.postprocess(images, output_type=output_type)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "input_features"]


__all__ = ["AUDIO_FEATURES", "MultimodalVAEImageProcessor", "MultimodalVAEProcessor", "log_mel_feature_extractor"]
