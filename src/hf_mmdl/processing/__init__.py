"""Processors: raw images, region features, text and audio in; model inputs out, and model outputs back."""

from .audio_processing import validate_audio
from .data_collator_voken_lm import DataCollatorForVokenLanguageModeling
from .image_processing import validate_images
from .image_processing_autoencoders import AutoencoderImageProcessor, DiscreteVAEImageProcessor, ImageVAEImageProcessor
from .processing_data2vec_multimodal import (
    Data2VecMultimodalImageProcessor,
    Data2VecMultimodalProcessor,
    audio_feature_extractor,
)
from .processing_glide import GlideImageProcessor, GlideProcessor, encode_captions
from .processing_m2 import M2ImageProcessor, M2Processor
from .processing_vokenizer import VokenizerImageProcessor, VokenizerProcessor
from .tokenization import (
    caption_tokenizer_from_vocab, train_bert_wordpiece, train_byte_level_bpe, train_caption_tokenizer, words_of,
)
from .processing_multimodal_vae import MultimodalVAEImageProcessor, MultimodalVAEProcessor

__all__ = [
    "AutoencoderImageProcessor",
    "Data2VecMultimodalImageProcessor",
    "DataCollatorForVokenLanguageModeling",
    "Data2VecMultimodalProcessor",
    "DiscreteVAEImageProcessor",
    "GlideImageProcessor",
    "GlideProcessor",
    "ImageVAEImageProcessor",
    "M2ImageProcessor",
    "M2Processor",
    "VokenizerImageProcessor",
    "VokenizerProcessor",
    "MultimodalVAEImageProcessor",
    "MultimodalVAEProcessor",
    "audio_feature_extractor",
    "caption_tokenizer_from_vocab",
    "encode_captions",
    "train_bert_wordpiece",
    "train_byte_level_bpe",
    "train_caption_tokenizer",
    "validate_audio",
    "validate_images",
    "words_of",
]
