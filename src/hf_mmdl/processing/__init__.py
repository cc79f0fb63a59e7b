"""Processors: raw images, region features, text and audio in; model inputs out, and model outputs back."""

from .image_processing import validate_images
from .image_processing_autoencoders import AutoencoderImageProcessor, DiscreteVAEImageProcessor, ImageVAEImageProcessor
from .processing_glide import GlideImageProcessor, GlideProcessor, encode_captions
from .processing_m2 import M2ImageProcessor, M2Processor
from .tokenization import caption_tokenizer_from_vocab, train_caption_tokenizer, words_of

__all__ = [
    "AutoencoderImageProcessor",
    "DiscreteVAEImageProcessor",
    "GlideImageProcessor",
    "GlideProcessor",
    "ImageVAEImageProcessor",
    "M2ImageProcessor",
    "M2Processor",
    "caption_tokenizer_from_vocab",
    "encode_captions",
    "train_caption_tokenizer",
    "validate_images",
    "words_of",
]
