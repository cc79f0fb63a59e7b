"""Word-level caption tokenizers built with `tokenizers` and wrapped as `PreTrainedTokenizerFast`.

Captioning papers of the M² era lower-case captions, drop punctuation, and keep words seen at least `min_count`
times; the rest map to <unk>. The vocabulary is sorted by frequency, then alphabetically, after the special tokens,
so that the same captions always give the same ids.
"""

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CAPTION_SPECIAL_TOKENS = ("<unk>", "<pad>", "<bos>", "<eos>")
_PUNCTUATION = r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"""


def _caption_pipeline(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=CAPTION_SPECIAL_TOKENS[0]))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(_PUNCTUATION), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


@lru_cache(maxsize=1)
def _word_splitter() -> Tokenizer:
    return _caption_pipeline({CAPTION_SPECIAL_TOKENS[0]: 0})


def words_of(text: str) -> list[str]:
    """The words a caption tokenizer sees in `text`: lower-cased, punctuation dropped."""
    pipeline = _word_splitter()
    normalized = pipeline.normalizer.normalize_str(text)
    return [word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(normalized)]


def caption_tokenizer_from_vocab(itos: Sequence[str], model_max_length: int = 54) -> PreTrainedTokenizerFast:
    """A caption tokenizer whose id i is `itos[i]`; the four special tokens must be in the list (e.g. an original
    checkpoint's vocabulary)."""
    missing = [token for token in CAPTION_SPECIAL_TOKENS if token not in itos]
    if missing:
        raise ValueError(f"The vocabulary lacks the special tokens {missing}; it needs all of {CAPTION_SPECIAL_TOKENS}.")
    if len(set(itos)) != len(itos):
        raise ValueError("The vocabulary lists some words twice; each word needs exactly one id.")
    unk, pad, bos, eos = CAPTION_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=_caption_pipeline({word: i for i, word in enumerate(itos)}),
        unk_token=unk,
        pad_token=pad,
        bos_token=bos,
        eos_token=eos,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


class SavedTokenizerRequired:
    """Mixin for a `ProcessorMixin` (listed before it) whose tokenizer is a `tokenizers` serialisation: loading a
    local folder that lacks the tokenizer's files raises an `OSError` naming them, where transformers would try to
    convert a slow tokenizer and ask for sentencepiece."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        folder = Path(os.fspath(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
        if folder.is_dir():
            has_serialisation = (folder / "tokenizer.json").is_file() or all(
                (folder / name).is_file() for name in ("vocab.json", "merges.txt"))
            missing = [name for name in ("tokenizer.json", "tokenizer_config.json") if not (folder / name).is_file()]
            if not has_serialisation or "tokenizer_config.json" in missing:
                raise OSError(
                    f"{folder} has no saved tokenizer for {cls.__name__}: {', '.join(missing)} missing. Save the "
                    "whole processor there (`processor.save_pretrained(folder)` writes the tokenizer with the image "
                    "processor), or pass a folder that holds one."
                )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def train_caption_tokenizer(
    captions: Iterable[str], min_count: int = 5, model_max_length: int = 54
) -> PreTrainedTokenizerFast:
    """Build the vocabulary from training captions: words seen at least `min_count` times, most frequent first."""
    counts = Counter(word for caption in captions for word in words_of(caption))
    if not counts:
        raise ValueError("No words found in the training captions: pass a non-empty list of captions.")
    kept = sorted((word for word, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return caption_tokenizer_from_vocab(list(CAPTION_SPECIAL_TOKENS) + kept, model_max_length=model_max_length)


# RoBERTa's special tokens at RoBERTa's ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4), so that converted
# RoBERTa-layout text encoders (data2vec-text) find padding where their position ids expect it.
ROBERTA_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BYTE_ALPHABET_SIZE = 256


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int = 1000, model_max_length: int = 64,
                         min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer trained on `texts` with `tokenizers`: all 256 bytes (so any text
    encodes, unknown words as byte pieces), merges of pairs seen at least `min_frequency` times up to `vocab_size`
    entries, the RoBERTa special tokens at ids 0-4, and `<s> text </s>` framing. Case is kept, as RoBERTa does.
    Raises ValueError for no (non-blank) texts or a `vocab_size` below 261 (the bytes and special tokens)."""
    from tokenizers import decoders, processors, trainers

    texts = [text for text in texts if isinstance(text, str) and text.strip()]
    if not texts:
        raise ValueError("No text to train the tokenizer on: pass a non-empty list of non-blank strings.")
    smallest = BYTE_ALPHABET_SIZE + len(ROBERTA_SPECIAL_TOKENS)
    if vocab_size < smallest:
        raise ValueError(f"vocab_size={vocab_size} cannot hold the {BYTE_ALPHABET_SIZE} bytes and "
                         f"{len(ROBERTA_SPECIAL_TOKENS)} special tokens; use at least {smallest}.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=list(ROBERTA_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    bos, pad, eos, unk, mask = ROBERTA_SPECIAL_TOKENS
    tokenizer.post_processor = processors.RobertaProcessing((eos, tokenizer.token_to_id(eos)),
                                                            (bos, tokenizer.token_to_id(bos)), add_prefix_space=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos, unk_token=unk,
        pad_token=pad, mask_token=mask, model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_bert_wordpiece(texts: Iterable[str], vocab_size: int = 2000, model_max_length: int = 128,
                         min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """An uncased BERT-style WordPiece tokenizer trained on `texts` with `tokenizers` (BERT's normaliser and
    pre-tokeniser, `##` continuation pieces, `[PAD] [UNK] [CLS] [SEP] [MASK]` at ids 0-4, `[CLS] text [SEP]`
    framing, character offsets), for models trained from scratch where no pretrained BERT vocabulary is at hand.
    Raises ValueError for no (non-blank) texts."""
    from tokenizers import decoders, processors, trainers

    texts = [text for text in texts if isinstance(text, str) and text.strip()]
    if not texts:
        raise ValueError("No text to train the tokenizer on: pass a non-empty list of non-blank strings.")
    pad, unk, cls, sep, mask = BERT_SPECIAL_TOKENS
    tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                        special_tokens=list(BERT_SPECIAL_TOKENS))
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )
