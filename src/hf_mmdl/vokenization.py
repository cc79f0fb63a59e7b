"""Vokenization (Tan & Bansal, EMNLP 2020): label every token of a text, in its context, with the most relevant image
("voken") of a fixed image set, using a trained [`VokenizerModel`].

- [`Vokenizer`] holds the matcher, its processor and a key store: the unit-length image keys g(x) of an image set,
  indexed with faiss for inner-product search (exact `IndexFlatIP`, or `IndexIVFFlat` with `nprobe` for large
  sets). `vokenize(sentences)` returns per-token vokens and relevance scores aligned 1:1 with the tokenizer's tokens
  (special tokens get -100); `vokenize_dataset` adds an aligned `vokens` column to a `datasets` corpus (sharded
  across CPU processes with `num_proc`); `save_pretrained` / `from_pretrained` store the keys, index, image ids and
  optional thumbnails next to the model.
- [`ReVokenizer`] gives the tokens of another tokenizer (e.g. RoBERTa's byte-level BPE) the voken of the matcher's
  token whose character span overlaps them most (intersection over union).

Sentences longer than `max_tokens` (128 by default, as the released code) are cut into near-equal segments, each
framed with [CLS] and [SEP] and vokenized on its own; the vokens are put back in the sentence's token order.
"""

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from .modeling import VokenizerModel
from .processing.image_processing import to_rgb, validate_images
from .processing.processing_vokenizer import VokenizerProcessor, check_sentences

KEYS_FILE = "voken_keys.safetensors"
INDEX_FILE = "voken_index.faiss"
IMAGE_IDS_FILE = "voken_image_ids.txt"
INDEX_CONFIG_FILE = "voken_index_config.json"
THUMBNAILS_FILE = "voken_thumbnails.safetensors"  # optional: small copies of the images, for showing vokens
KEY_STORE_FILES = (KEYS_FILE, INDEX_FILE, IMAGE_IDS_FILE, INDEX_CONFIG_FILE)
INDEX_TYPES = ("flat", "ivf")
MAX_TOKENS = 128  # the released code's longest segment, [CLS] and [SEP] included
IGNORE = -100  # the voken of special tokens (and of tokens no source token overlaps, in revokenization)
# faiss' k-means wants ≥ 39 training points per IVF list; fewer lists than that per key make poor partitions.
KEYS_PER_LIST = 39


@dataclass
class VokenizedSentence:
    """One sentence's vokens, aligned with `tokens` (the tokenizer's tokens, special ones included).

    Attributes:
        tokens: the token strings.
        input_ids: their ids.
        offsets: (start, end) character span of each token in the sentence ((0, 0) for special tokens).
        vokens: int64 (tokens,) image indices into the key store (or (tokens, top_k), best first); -100 at special
            tokens.
        scores: float32, same shape: the relevance ⟨f(w; s), g(x)⟩ in [-1, 1] of each voken; NaN where -100.
    """

    tokens: list[str]
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    vokens: np.ndarray
    scores: np.ndarray


def segment_lengths(num_tokens: int, longest: int) -> list[int]:
    """Near-equal lengths (differing by at most 1, longer ones first) of the fewest segments of at most `longest`
    tokens that `num_tokens` tokens are cut into."""
    count = max(1, math.ceil(num_tokens / longest))
    return [len(part) for part in np.array_split(np.arange(num_tokens), count)]


def build_index(keys: np.ndarray, index_type: str = "flat", nlist: int | None = None, nprobe: int = 8):
    """A faiss inner-product index over `keys` ((N, d) float32, unit rows): `"flat"` searches exactly; `"ivf"`
    partitions the keys into `nlist` k-means lists (default 4·√N, at most N / 39) and searches the `nprobe` lists
    nearest a query. Raises ValueError for an unknown type or `nlist` / `nprobe` outside [1, N] / [1, nlist]."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}.")
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    count, dim = keys.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = nlist or max(1, min(int(4 * math.sqrt(count)), count // KEYS_PER_LIST))
        if not 1 <= nlist <= count:
            raise ValueError(f"nlist={nlist} must lie in [1, {count}] (the number of keys).")
        if not 1 <= nprobe <= nlist:
            raise ValueError(f"nprobe={nprobe} must lie in [1, nlist={nlist}].")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(keys)
        index.nprobe = nprobe
    index.add(keys)
    return index


def align_by_overlap(source_spans: list[tuple[int, int]], target_spans: list[tuple[int, int]]) -> list[int]:
    """For each target character span, the index of the source span with the highest intersection over union (the
    first on ties), or -1 when none overlaps; empty spans ((0, 0): special tokens) match nothing. One left-to-right
    scan: both lists must be in text order, as tokenizers return them."""
    real = [(i, s, e) for i, (s, e) in enumerate(source_spans) if e > s]
    matches, first = [], 0
    for start, end in target_spans:
        if end <= start:
            matches.append(-1)
            continue
        while first < len(real) and real[first][2] <= start:
            first += 1
        best, best_iou = -1, 0.0
        for i, s, e in real[first:]:
            if s >= end:
                break
            iou = (min(e, end) - max(s, start)) / (max(e, end) - min(s, start))
            if iou > best_iou:
                best, best_iou = i, iou
        matches.append(best)
    return matches


def _weights_sha256(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _check_top_k(top_k: int, num_keys: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}.")
    if top_k > num_keys:
        raise ValueError(f"top_k={top_k} but the key store holds only {num_keys} images: pass top_k ≤ {num_keys} or "
                         "build the key store from more images.")


def _check_fast_tokenizer(tokenizer, role: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"The {role} must be a fast (tokenizers-backed) tokenizer: vokens are aligned through character "
                        f"offsets. Got {type(tokenizer).__name__}.")


# Config fields that saving and loading add or change without changing what the model computes.
_BOOKKEEPING = {"architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype"}


def _architecture_of(config: dict) -> dict:
    return {key: _architecture_of(value) if isinstance(value, dict) else value
            for key, value in config.items() if key not in _BOOKKEEPING}


class _DatasetVokenizing:
    """`vokenize_dataset` for any object with `vokenize(sentences, top_k)` and a `fingerprint`."""

    def vokenize_dataset(self, dataset, text_column: str = "text", top_k: int = 1, with_scores: bool = False,
                         batch_size: int = 256, num_proc: int | None = None, desc: str = "Vokenizing", **map_kwargs):
        """`dataset` (a `datasets.Dataset`) with a `vokens` column added by `Dataset.map` (batched, with a progress
        bar): row r's vokens are aligned with `tokenizer(row[text_column])`'s tokens (`-100` at special tokens), as
        lists of ints (lists of `top_k` ints with `top_k > 1`); `with_scores` adds a `voken_scores` column alike.
        The map's fingerprint is derived from the dataset's and this object's (model weights, tokenizer, keys, index
        settings), so a dataset stored on disk is vokenized once and then read from the datasets cache.

        `num_proc` > 1 shards the corpus across that many worker processes (`Dataset.map(num_proc=...)`), each with
        its own copy of the matcher and index (sent pickled) running torch and faiss on one thread: the processes
        are the parallelism, and more threads each would oversubscribe the cores (OpenMP thread pools also do not
        survive the fork that starts the workers). The column is the same as with one process. The model must be on
        the CPU for this (CUDA cannot be used in forked workers).

        Raises ValueError for a missing `text_column` (naming the columns there are), an existing `vokens` column,
        an empty or blank text (naming its row), `num_proc` < 1, and `num_proc` > 1 with a model off the CPU."""
        from datasets.fingerprint import Hasher

        if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1):
            raise ValueError(f"num_proc must be a positive int (processes to shard the corpus across), got {num_proc!r}.")
        if (num_proc or 1) > 1 and self.device.type != "cpu":
            raise ValueError(f"num_proc={num_proc} shards the corpus across forked CPU processes, but the matcher is on "
                             f"{self.device}: vokenize on the GPU with num_proc=None, or move the model to the CPU.")
        if text_column not in dataset.column_names:
            raise ValueError(f"The dataset has no column {text_column!r}; its columns are {dataset.column_names}. Pass "
                             "text_column=...")
        added = ["vokens", "voken_scores"] if with_scores else ["vokens"]
        if clash := [name for name in added if name in dataset.column_names]:
            raise ValueError(f"The dataset already has the column(s) {clash}; remove them first "
                             "(dataset.remove_columns) rather than have them overwritten.")

        parent = os.getpid()

        def vokenize_rows(batch, indices):
            if os.getpid() != parent:  # a worker process of num_proc > 1 (see the docstring)
                torch.set_num_threads(1)
                faiss.omp_set_num_threads(1)
            texts = batch[text_column]
            for index, text in zip(indices, texts):
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"Row {index} of column {text_column!r} is {text!r}: every row needs text. Drop such "
                                     "rows first, e.g. dataset.filter(lambda row: row[...].strip()).")
            results = self.vokenize(texts, top_k=top_k)
            columns = {"vokens": [result.vokens.tolist() for result in results]}
            if with_scores:
                columns["voken_scores"] = [result.scores.tolist() for result in results]
            return columns

        fingerprint = Hasher.hash([dataset._fingerprint, self.fingerprint, text_column, top_k, with_scores])
        return dataset.map(vokenize_rows, batched=True, batch_size=batch_size, with_indices=True, desc=desc,
                           num_proc=num_proc, new_fingerprint=fingerprint, **map_kwargs)


class Vokenizer(_DatasetVokenizing):
    """A trained matcher with a key store over an image set: retrieves each token's voken.

    Args:
        model: the [`VokenizerModel`] (put in eval mode).
        processor: its [`VokenizerProcessor`] (a fast BERT tokenizer with `[CLS]`/`[SEP]` and the image processor).
        keys: (num_images, joint_dim) image keys, as [`Vokenizer.build`] computes them with this model.
        image_ids: one id per key (default "0", "1", ...), e.g. file names; `image_ids[voken]` names a voken's image.
        index_type, nlist, nprobe: the faiss index ([`build_index`]).
        max_tokens: longest segment fed to the matcher, [CLS] and [SEP] included (default: 128, or the BERT's
            position table if shorter).
        thumbnails: optional uint8 (num_images, side, side, 3) RGB copies of the images, one per key, to show what a
            voken is (`thumbnail(voken)`, the demo); [`Vokenizer.build`] makes them with `thumbnail_size`.

    Raises TypeError for a model or processor of another kind or a slow tokenizer, and ValueError for keys of another
    width than the model's `joint_dim`, non-finite keys, ids of another count, a tokenizer whose vocabulary exceeds
    the model's embedding table, a `max_tokens` the model has no positions for, or thumbnails of another count or
    layout than (num_images, side, side, 3) uint8.
    """

    def __init__(self, model: VokenizerModel, processor: VokenizerProcessor, keys, image_ids: list[str] | None = None,
                 index_type: str = "flat", nlist: int | None = None, nprobe: int = 8, max_tokens: int | None = None,
                 index=None, thumbnails: np.ndarray | None = None):
        if not isinstance(model, VokenizerModel):
            raise TypeError(f"model must be a VokenizerModel, got {type(model).__name__}.")
        tokenizer = getattr(processor, "tokenizer", None)
        _check_fast_tokenizer(tokenizer, "processor's tokenizer")
        text = model.config.text_config
        if len(tokenizer) > text.vocab_size:
            raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the matcher's BERT embeds {text.vocab_size}: "
                             "it is not the matcher's tokenizer. Use the processor saved with the model.")
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer needs [CLS], [SEP] and [PAD] tokens (a BERT tokenizer) to frame segments.")
        self.max_tokens = max_tokens or min(MAX_TOKENS, text.max_position_embeddings)
        if not 3 <= self.max_tokens <= text.max_position_embeddings:
            raise ValueError(f"max_tokens={self.max_tokens} must lie in [3, {text.max_position_embeddings}] (the BERT's "
                             "positions; [CLS] and [SEP] take two).")
        keys = keys.detach().float().cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys, np.float32)
        if keys.ndim != 2 or keys.shape[1] != model.config.joint_dim or len(keys) == 0:
            raise ValueError(f"keys must be a non-empty (num_images, {model.config.joint_dim}) array of this model's image "
                             f"keys, got shape {keys.shape}.")
        if not np.isfinite(keys).all():
            raise ValueError("keys contain NaN or infinite values: rebuild the key store.")
        image_ids = [str(i) for i in range(len(keys))] if image_ids is None else [str(i) for i in image_ids]
        if len(image_ids) != len(keys):
            raise ValueError(f"{len(image_ids)} image ids for {len(keys)} keys: pass one id per key.")
        if thumbnails is not None:
            thumbnails = np.asarray(thumbnails)
            if (thumbnails.dtype != np.uint8 or thumbnails.ndim != 4 or thumbnails.shape[3] != 3
                    or thumbnails.shape[1] != thumbnails.shape[2] or len(thumbnails) != len(keys)):
                raise ValueError(f"thumbnails must be a uint8 (num_images={len(keys)}, side, side, 3) RGB array, got "
                                 f"{thumbnails.dtype} {thumbnails.shape}.")
        self.thumbnails = thumbnails
        self.model, self.processor, self.tokenizer = model.eval(), processor, tokenizer
        self.keys, self.image_ids = np.ascontiguousarray(keys, dtype=np.float32), image_ids
        self.index_type, self.nprobe = index_type, nprobe
        self.index = index if index is not None else build_index(self.keys, index_type, nlist, nprobe)
        self.nlist = getattr(self.index, "nlist", None)
        if self.index.ntotal != len(self.keys) or self.index.d != self.keys.shape[1]:
            raise ValueError(f"The index holds {self.index.ntotal} vectors of {self.index.d} dimensions but the key store "
                             f"{len(self.keys)} of {self.keys.shape[1]}: they were not built together.")
        self._fingerprint = None

    @classmethod
    def build(cls, model: VokenizerModel, processor: VokenizerProcessor, images, image_column: str = "image",
              id_column: str | None = None, batch_size: int = 32, show_progress: bool = True,
              thumbnail_size: int | None = None, **kwargs) -> "Vokenizer":
        """Compute the key store g(x) of an image set with the model and index it.

        `images` is a `datasets.Dataset` with an image column (`image_column`; ids from `id_column`, else the row
        numbers) or a list of images (PIL images or arrays, under the package's image rules). Keys are computed in
        batches of `batch_size` under `torch.no_grad()`, with a progress bar. `thumbnail_size` (pixels) also keeps a
        square centre-cropped RGB copy of every image that size, saved with the key store (`voken_thumbnails.
        safetensors`: 50,000 images at 32 px take 150 MB) so that vokens can be shown (the demo). Other keywords go to
        [`Vokenizer`] (`image_ids`, `index_type`, `nlist`, `nprobe`, `max_tokens`). Raises ValueError for no images, a
        missing column or a `thumbnail_size` below 1."""
        if thumbnail_size is not None and (isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int)
                                           or thumbnail_size < 1):
            raise ValueError(f"thumbnail_size must be a positive int (pixels) or None, got {thumbnail_size!r}.")
        if hasattr(images, "column_names"):
            missing = [c for c in (image_column, id_column) if c is not None and c not in images.column_names]
            if missing:
                raise ValueError(f"The image dataset has no column(s) {missing}; its columns are {images.column_names}.")
            if id_column is not None:
                kwargs.setdefault("image_ids", [str(i) for i in images[id_column]])
            rows = lambda start: images[start:start + batch_size][image_column]  # noqa: E731
        else:
            images = list(images)
            rows = lambda start: images[start:start + batch_size]  # noqa: E731
        if len(images) == 0:
            raise ValueError("The image set is empty: the key store needs at least one image.")
        model.eval()
        keys, thumbnails = [], []
        device = model.device
        with torch.no_grad():
            for start in tqdm(range(0, len(images), batch_size), desc="Image keys", disable=not show_progress):
                batch = rows(start)
                pixel_values = processor(images=batch)["pixel_values"].to(device)
                keys.append(model.get_image_keys(pixel_values).float().cpu())
                if thumbnail_size:
                    thumbnails += [np.asarray(PIL.ImageOps.fit(to_rgb(image), (thumbnail_size, thumbnail_size),
                                                               PIL.Image.Resampling.BICUBIC))
                                   for image in validate_images(batch)]
        return cls(model, processor, torch.cat(keys), thumbnails=np.stack(thumbnails) if thumbnails else None, **kwargs)

    @property
    def fingerprint(self) -> str:
        """A hash of everything a voken depends on: the config, the token side's weights, the tokenizer, the keys,
        the image ids and the index settings (computed once)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(json.dumps(_architecture_of(self.model.config.to_dict()), sort_keys=True).encode())
            digest.update(_weights_sha256(self.model.lang_model).encode())
            digest.update(self.tokenizer.backend_tokenizer.to_str().encode())
            digest.update(self.keys.tobytes())
            digest.update("\n".join(self.image_ids).encode())
            digest.update(json.dumps([self.index_type, self.nlist, self.nprobe, self.max_tokens]).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def num_images(self) -> int:
        return len(self.keys)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def thumbnail(self, voken: int) -> PIL.Image.Image | None:
        """The RGB thumbnail of image `voken` (an index into the key store), or None when none were kept."""
        if self.thumbnails is None:
            return None
        if not 0 <= int(voken) < self.num_images:
            raise ValueError(f"voken {voken} is outside [0, {self.num_images}) (the key store's images).")
        return PIL.Image.fromarray(self.thumbnails[int(voken)])

    def __getstate__(self) -> dict:
        # What `vokenize_dataset(num_proc=...)` sends to its worker processes. faiss indexes are SWIG objects that
        # pickle cannot write: they travel as faiss' own serialization. The model travels as its config and weights
        # (forward hooks that transformers installs are local functions pickle cannot write either).
        return self.__dict__ | {"index": faiss.serialize_index(self.index),
                                "model": (self.model.config, self.model.state_dict(), self.model.dtype)}

    def __setstate__(self, state: dict) -> None:
        config, weights, dtype = state["model"]
        model = VokenizerModel(config).to(dtype)
        model.load_state_dict(weights)
        self.__dict__.update(state | {"index": faiss.deserialize_index(state["index"]), "model": model.eval()})

    def search(self, queries: np.ndarray, top_k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(scores, image indices) of the `top_k` keys of highest inner product with each (n, joint_dim) query."""
        _check_top_k(top_k, self.num_images)
        scores, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), top_k)
        if (found < 0).any():  # an IVF search whose probed lists hold fewer than top_k keys
            raise ValueError(f"The {self.nprobe} probed IVF lists held fewer than top_k={top_k} keys for some tokens: "
                             "raise nprobe (Vokenizer.from_pretrained(..., nprobe=...)) or lower top_k.")
        return scores, found

    def vokenize(self, sentences, top_k: int = 1, batch_size: int = 32) -> list[VokenizedSentence]:
        """The vokens of each sentence (a string or a list of strings), aligned with `tokenizer(sentence)`'s tokens.

        Each sentence is tokenized in full; its word pieces are cut into near-equal segments of at most
        `max_tokens − 2` ([`segment_lengths`]), each framed as `[CLS] segment [SEP]`; the matcher embeds the segments
        (`batch_size` at a time, padded) and every word piece gets its `top_k` nearest image keys.

        Raises ValueError for an empty list, an empty or blank sentence, a non-string, and `top_k` outside
        [1, number of images]."""
        texts = check_sentences(sentences)
        _check_top_k(top_k, self.num_images)
        encoded = self.tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True,
                                 return_special_tokens_mask=True, truncation=False, verbose=False)
        longest = self.max_tokens - 2
        segments, owners = [], []  # word-piece ids of each segment; (sentence, positions) they came from
        for row, (ids, special) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"])):
            positions = [p for p, is_special in enumerate(special) if not is_special]
            start = 0
            for length in segment_lengths(len(positions), longest):
                part = positions[start:start + length]
                segments.append([ids[p] for p in part])
                owners.append((row, part))
                start += length
        queries = self._token_keys(segments, batch_size)
        scores, found = self.search(queries, top_k) if len(queries) else (np.zeros((0, top_k)), np.zeros((0, top_k)))
        results, cursor = [], 0
        per_row = {row: [] for row in range(len(texts))}
        for row, part in owners:
            per_row[row].append((part, cursor))
            cursor += len(part)
        for row, ids in enumerate(encoded["input_ids"]):
            vokens = np.full((len(ids), top_k), IGNORE, dtype=np.int64)
            values = np.full((len(ids), top_k), np.nan, dtype=np.float32)
            for part, offset in per_row[row]:
                vokens[part] = found[offset:offset + len(part)]
                values[part] = scores[offset:offset + len(part)]
            if top_k == 1:
                vokens, values = vokens[:, 0], values[:, 0]
            results.append(VokenizedSentence(tokens=encoded.tokens(row), input_ids=list(ids),
                                             offsets=[tuple(o) for o in encoded["offset_mapping"][row]],
                                             vokens=vokens, scores=values))
        return results

    def _token_keys(self, segments: list[list[int]], batch_size: int) -> np.ndarray:
        """(total word pieces, joint_dim) keys of every segment's word pieces, in order, [CLS]/[SEP] dropped."""
        tokenizer, device = self.tokenizer, self.model.device
        out = []
        with torch.no_grad():
            for start in range(0, len(segments), batch_size):
                batch = [[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id] for ids in segments[start:start + batch_size]]
                width = max(len(ids) for ids in batch)
                input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(input_ids)
                for i, ids in enumerate(batch):
                    input_ids[i, :len(ids)], mask[i, :len(ids)] = torch.tensor(ids), 1
                keys = self.model.get_text_keys(input_ids.to(device), mask.to(device)).float().cpu()
                out += [keys[i, 1:len(ids) - 1] for i, ids in enumerate(batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.keys.shape[1]), np.float32)

    def save_pretrained(self, save_directory) -> None:
        """Write the model, processor, keys (`voken_keys.safetensors`), faiss index (`voken_index.faiss`), image ids
        (`voken_image_ids.txt`, one per line), index settings (`voken_index_config.json`) and, when kept, thumbnails
        (`voken_thumbnails.safetensors`) to one folder (a thumbnails file of an earlier save there is removed)."""
        folder = Path(save_directory)
        if folder.is_file():
            raise FileExistsError(f"Cannot save the Vokenizer to {folder}: it is an existing file. Pass a folder path.")
        if any("\n" in i or "\r" in i for i in self.image_ids):
            raise ValueError("An image id contains a line break; ids are stored one per line.")
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        save_file({"keys": self.keys}, str(folder / KEYS_FILE))
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / IMAGE_IDS_FILE).write_text("\n".join(self.image_ids) + "\n", encoding="utf-8")
        settings = dict(index_type=self.index_type, nlist=self.nlist, nprobe=self.nprobe, max_tokens=self.max_tokens,
                        num_images=self.num_images, joint_dim=int(self.keys.shape[1]),
                        image_side_sha256=_weights_sha256(self.model.visn_model))
        (folder / INDEX_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        if self.thumbnails is not None:
            save_file({"thumbnails": np.ascontiguousarray(self.thumbnails)}, str(folder / THUMBNAILS_FILE))
        elif (folder / THUMBNAILS_FILE).exists():  # another image set's: it would show the wrong images
            (folder / THUMBNAILS_FILE).unlink()

    @classmethod
    def from_pretrained(cls, folder, nprobe: int | None = None, **model_kwargs) -> "Vokenizer":
        """Load what `save_pretrained` wrote (a local folder, or a Hub repository id, downloaded whole). The stored
        index is used as is; `nprobe` changes an IVF index's search breadth.

        Raises FileNotFoundError naming the missing key store files, ValueError naming a key store file that cannot
        be read (truncated or damaged), and ValueError when keys, ids, thumbnails and index disagree or the keys were
        computed by other image-side weights than the folder's model."""
        folder = Path(os.fspath(folder))
        if not folder.is_dir():  # a Hub repository id: fetch the whole folder (keys and index are not model files)
            from huggingface_hub import snapshot_download

            try:
                folder = Path(snapshot_download(str(folder)))
            except Exception as error:
                raise OSError(f"{folder} is neither a local folder nor a Hub repository that can be downloaded "
                              f"({type(error).__name__}: {error}).") from error
        missing = [name for name in KEY_STORE_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks the key store file(s) {missing}: it is not a saved Vokenizer (save "
                                    "one with Vokenizer.save_pretrained, or build it with Vokenizer.build).")
        settings = _read_key_store_file(folder, INDEX_CONFIG_FILE, lambda path: _index_settings(path))
        model = VokenizerModel.from_pretrained(folder, **model_kwargs)
        processor = VokenizerProcessor.from_pretrained(folder)
        if settings["image_side_sha256"] != _weights_sha256(model.visn_model):
            raise ValueError(f"The key store in {folder} was computed by other image-side weights than the model saved "
                             "there now (was the model saved again after more training?): rebuild it with "
                             "Vokenizer.build(model, processor, images) and save that.")
        keys = _read_key_store_file(folder, KEYS_FILE, lambda path: load_file(str(path))["keys"])
        image_ids = _read_key_store_file(folder, IMAGE_IDS_FILE,
                                         lambda path: path.read_text(encoding="utf-8").split("\n")[:-1])
        index = _read_key_store_file(folder, INDEX_FILE, lambda path: faiss.read_index(str(path)))
        thumbnails = (_read_key_store_file(folder, THUMBNAILS_FILE, lambda path: load_file(str(path))["thumbnails"])
                      if (folder / THUMBNAILS_FILE).is_file() else None)
        if hasattr(index, "nlist") != (settings["index_type"] == "ivf"):
            raise ValueError(f"{folder / INDEX_FILE} holds a {type(index).__name__} but {INDEX_CONFIG_FILE} says "
                             f"{settings['index_type']!r}: the files come from different saves. Save the Vokenizer again.")
        nprobe = nprobe or settings["nprobe"]
        if settings["index_type"] == "ivf":
            if not 1 <= nprobe <= index.nlist:
                raise ValueError(f"nprobe={nprobe} must lie in [1, nlist={index.nlist}].")
            index.nprobe = nprobe
        return cls(model, processor, keys, image_ids=image_ids, index_type=settings["index_type"], nprobe=nprobe,
                   max_tokens=settings["max_tokens"], index=index, thumbnails=thumbnails)


def _index_settings(path: Path) -> dict:
    settings = json.loads(path.read_text())
    missing = {"index_type", "nprobe", "max_tokens", "image_side_sha256"} - set(settings)
    if missing or settings["index_type"] not in INDEX_TYPES:
        raise KeyError(f"missing or unknown entries: {sorted(missing) or settings['index_type']}")
    return settings


def _thumbnail_side(path: Path) -> int:
    """The side of the thumbnails in a thumbnails file, read from its header (the pixels are not loaded)."""
    with safe_open(str(path), framework="numpy") as file:
        return int(file.get_slice("thumbnails").get_shape()[1])


def _read_key_store_file(folder: Path, name: str, read):
    """`read(folder / name)`, with any failure to parse the file (truncated, damaged, of another format) raised as a
    ValueError that names the file."""
    try:
        return read(folder / name)
    except Exception as error:  # safetensors, faiss, json and text decoding each raise their own kinds
        raise ValueError(f"{folder / name} cannot be read ({type(error).__name__}: {error}); the key store file is "
                         "damaged or truncated. Save the Vokenizer again (Vokenizer.save_pretrained), or rebuild it "
                         "with Vokenizer.build.") from error


class ReVokenizer(_DatasetVokenizing):
    """Vokens for the tokens of another tokenizer (e.g. RoBERTa's): each sentence is vokenized with the
    [`Vokenizer`]'s own BERT tokenizer, and each target token gets the voken (and score) of the BERT token whose
    character span has the highest intersection over union with its own ([`align_by_overlap`]). Special tokens,
    and tokens no BERT token overlaps, get -100 (score NaN).

    `vokenize(sentences, top_k)` and `vokenize_dataset(...)` work as the Vokenizer's, aligned with
    `tokenizer(sentence)`. Raises TypeError for a slow target tokenizer."""

    def __init__(self, vokenizer: Vokenizer, tokenizer):
        if not isinstance(vokenizer, Vokenizer):
            raise TypeError(f"vokenizer must be a Vokenizer, got {type(vokenizer).__name__}.")
        _check_fast_tokenizer(tokenizer, "target tokenizer")
        self.vokenizer, self.tokenizer = vokenizer, tokenizer

    @property
    def device(self) -> torch.device:
        return self.vokenizer.device

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256((self.vokenizer.fingerprint + self.tokenizer.backend_tokenizer.to_str()).encode()).hexdigest()

    def vokenize(self, sentences, top_k: int = 1, batch_size: int = 32) -> list[VokenizedSentence]:
        texts = check_sentences(sentences)
        sources = self.vokenizer.vokenize(texts, top_k=top_k, batch_size=batch_size)
        encoded = self.tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True,
                                 return_special_tokens_mask=True, truncation=False, verbose=False)
        results = []
        for row, source in enumerate(sources):
            spans = [tuple(o) for o in encoded["offset_mapping"][row]]
            special = encoded["special_tokens_mask"][row]
            matches = align_by_overlap(source.offsets, [(0, 0) if s else span for span, s in zip(spans, special)])
            shape = (len(spans),) + source.vokens.shape[1:]
            vokens, scores = np.full(shape, IGNORE, dtype=np.int64), np.full(shape, np.nan, dtype=np.float32)
            for position, match in enumerate(matches):
                if match >= 0:
                    vokens[position], scores[position] = source.vokens[match], source.scores[match]
            results.append(VokenizedSentence(tokens=encoded.tokens(row), input_ids=list(encoded["input_ids"][row]),
                                             offsets=spans, vokens=vokens, scores=scores))
        return results


def key_store_card_section(folder) -> str:
    """The model card's markdown on the key store saved beside a matcher in `folder` (or on its absence): what
    `hf-mmdl push` uploads with the model so that `Vokenizer.from_pretrained(repo_id)` works."""
    folder = Path(folder)
    if any(not (folder / name).is_file() for name in KEY_STORE_FILES):
        return ("## Key store\n\nThis folder holds the matcher only, without a key store, so it cannot vokenize as it "
                "is: build one over an image set with `Vokenizer.build(model, processor, images)` and save it with "
                "`Vokenizer.save_pretrained`.")
    settings = _read_key_store_file(folder, INDEX_CONFIG_FILE, _index_settings)
    index = ("an exact inner-product index (`IndexFlatIP`)" if settings["index_type"] == "flat" else
             f"an IVF index of {settings['nlist']} k-means lists, {settings['nprobe']} searched per token by default "
             "(`Vokenizer.from_pretrained(..., nprobe=...)` changes it)")
    thumbnails = ""
    if (folder / THUMBNAILS_FILE).is_file():
        side = _read_key_store_file(folder, THUMBNAILS_FILE, _thumbnail_side)
        thumbnails = f", {side}×{side}-pixel thumbnails of the images (`{THUMBNAILS_FILE}`)"
    return (f"## Key store\n\nBeside the matcher, this repository holds the key store it vokenizes with: the "
            f"unit-length keys of {settings['num_images']:,} images in the {settings['joint_dim']}-dimensional joint "
            f"space (`{KEYS_FILE}`), {index} (`{INDEX_FILE}`), one image id per key (`{IMAGE_IDS_FILE}`; a voken v "
            f"names the image on line v + 1) and the index settings (`{INDEX_CONFIG_FILE}`){thumbnails}. "
            "`Vokenizer.from_pretrained` loads them all and checks that the keys were computed by this model's image "
            "side.")


__all__ = ["IGNORE", "ReVokenizer", "VokenizedSentence", "Vokenizer", "align_by_overlap", "build_index",
           "key_store_card_section", "segment_lengths"]
