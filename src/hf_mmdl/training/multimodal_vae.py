"""Training and scoring of the multimodal VAE, shared by `examples/run_multimodal_vae.py`, `hf-mmdl train
multimodal_vae` and `hf-mmdl quickstart`.

The run trains the multimodal VAE on image + caption pairs (with `--audio true`, also spoken captions) and, in the
same run, the image-only baseline: the same network, images, seed and steps, never shown a caption.

On the built-in attribute scenes (some colour-shape-position combinations held out) both are scored by a
deterministic reader of colour, shape and position (`hf_mmdl.data.attribute_scenes`) on:

- latent arithmetic: for every combination and every other colour b, z(image) − v(colour a) + v(colour b), decoded
  into an image (both models) and a caption (the multimodal one). The attribute vector v(c) of the multimodal VAE is
  the mean text posterior of the training captions that name colour c — the direction comes from words. The
  image-only VAE has no text, so its v(c) is the mean image posterior of the training images of colour c; the
  multimodal VAE with that same image-mean vector is reported too, so that the gain from captions is separated
  from the gain from the vectors. A case counts as right when the result has colour b and the source's shape and
  position;
- cross-modal generation: caption → image (decode the text posterior mean) and image → caption (generate from the
  image posterior mean), and image → image reconstruction;
- against chance: a uniformly random guess of each attribute;
- with audio: spoken caption → image and → caption, and the arithmetic with attribute vectors from spoken captions.

On a user's dataset (any `datasets` set with an image and a caption column, optionally audio) there is no analyser,
so the run reports what can be measured without one (`user_scores`): the held-out ELBO terms next to the image-only
baseline's, cross-modal retrieval in latent space (caption → image R@1 against chance), and latent arithmetic
z(image) − v(word a) + v(word b) on (row, word a, word b) edits (given, or picked from the captions) scored by whether
the caption generated from the result names word b and not word a, with a grid figure.
"""

import itertools
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from transformers import AutoModel, AutoProcessor, Trainer
from transformers.trainer_utils import SchedulerType

from ..architectures.multimodal_vae import multimodal_vae_results_table
from ..data.attribute_scenes import (
    ATTRIBUTES, analyse_attribute_scene, caption_attributes, chance_scores, load_attribute_scenes, score,
)
from ..data.scenes import COLOURS
from ..data.speech import SAMPLING_RATE
from ..data.text_to_image import render_prompt_scene
from ..data.trimodal import load_user_trimodal_dataset
from ..data.user import held_out_help, load_user_dataset
from ..modeling import MultimodalVAEModel
from ..modeling.configuration_multimodal_vae import multimodal_vae_config_for
from ..processing import MultimodalVAEProcessor
from ..processing.tokenization import words_of
from ..representations import retrieval_chance, retrieval_recall
from ..visualization import image_grid
from .common import ScheduleStepCallback
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)

BUILTIN_DATASET = "attribute_scenes"
ANALYSER_NOTE = ("Analyser scores (colour, shape and position read back from decoded images and generated captions) exist "
                 "only for the built-in attribute scenes; this run reports the held-out ELBO terms, cross-modal "
                 "retrieval in latent space and caption-scored arithmetic instead.")
# Edits picked from the captions: the arithmetic grid shows this many, all matching test rows are scored.
SHOWN_EDITS = 8
# A word in more than this share of captions ("a", "the") says nothing about a row, so it is never picked for an edit.
COMMON_WORD_SHARE = 0.5


@dataclass
class MultimodalVAEModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved multimodal VAE folder or Hub id to fine-tune; default: a fresh model."})
    model_size: str = field(default="small", metadata={"help": "Fresh model size: 'tiny' (tests) or 'small'."})
    fusion: str = field(default="moe", metadata={
        "help": "'moe' (mixture of experts, MMVAE: every modality is reconstructed from every expert's sample, which "
                "aligns the experts; it scored higher on arithmetic here) or 'poe' (product of experts with a prior "
                "expert, MVAE)."})
    latent_dim: int | None = field(default=None, metadata={"help": "Latent size (default: the size preset's)."})
    text_weight: float = field(default=50.0, metadata={"help": "λ of the caption log-likelihood in the ELBO."})
    beta: float = field(default=1.0, metadata={"help": "KL weight β (1 = the ELBO)."})
    kl_warmup_fraction: float = field(default=0.1, metadata={
        "help": "Fraction of max_steps over which β ramps up from 0 (cosine)."})
    audio: bool = field(default=False, metadata={
        "help": "Add the audio modality: spoken captions (log-mel frames) as a third expert and a decoder of them. The "
                "built-in scenes get captions spoken by espeak-ng (needs `espeakng-loader`); a user dataset needs "
                "--audio_column."})
    audio_weight: float = field(default=0.05, metadata={
        "help": "λ of the log-mel log-likelihood in the ELBO (with --audio true; 3,072 values per clip against 768 per "
                "16 px image: at 0.25 the audio term crowded out the image one, and the arithmetic scored 0.24 "
                "against 0.52 at 0.05 in the 400-step quickstart)."})
    image_only_baseline: bool = field(default=True, metadata={
        "help": "Also train the image-only VAE (same network, images, seed and steps, no captions) and score its "
                "arithmetic with image-mean attribute vectors."})


@dataclass
class MultimodalVAEDataArguments:
    dataset_name: str = field(default=BUILTIN_DATASET, metadata={
        "help": "'attribute_scenes' (the built-in scenes whose colour, shape and position the analyser reads back), or "
                "a user's `datasets` set (Hub name, local folder or save_to_disk folder) with an image and a text "
                "column (and an audio column with --audio true): no analyser there, so the run reports held-out ELBO "
                "terms, cross-modal retrieval and caption-scored arithmetic."})
    image_column: str = field(default="image", metadata={"help": "Image column of a user dataset."})
    text_column: str = field(default="text", metadata={"help": "Caption column of a user dataset."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a user dataset (with --audio true)."})
    audio_sampling_rate: int | None = field(default=None, metadata={
        "help": "Sampling rate of a user audio column holding bare float lists (datasets' Audio states its own)."})
    max_text_length: int | None = field(default=None, metadata={
        "help": "Most caption words the model reads (default: 16 on the built-in scenes, the longest training "
                "caption on a user dataset); longer captions are cut, and the run logs how many."})
    max_audio_seconds: int | None = field(default=None, metadata={
        "help": "Longest spoken caption the model reads, in whole seconds (default: 3 on the built-in scenes, the "
                "longest training clip rounded up on a user dataset); longer test clips are not scored, longer training "
                "clips are refused."})
    arithmetic_edits: list[str] | None = field(default=None, metadata={
        "help": "User-dataset arithmetic as ROW:WORD_A:WORD_B items (test row, word to remove, word to add), e.g. 0:red:blue; "
                "default: pairs of frequent caption words picked from the captions. Each word must appear in a training "
                "caption: its vector is the mean latent of the training captions containing it."})
    num_train_images: int = field(default=2000, metadata={"help": "Training rows (drawn from the trained combinations)."})
    num_held_out_combinations: int = field(default=12, metadata={
        "help": "Colour-shape-position combinations (of 72) never shown in training."})
    image_size: int = field(default=16, metadata={"help": "Side of the square images (the analyser reads 16 px scenes exactly)."})
    data_seed_builtin: int = field(default=0, metadata={"help": "Seed of the held-out choice and the training draw."})


@dataclass
class MultimodalVAETrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/multimodal_vae")
    per_device_train_batch_size: int = 32
    learning_rate: float = 2e-3
    max_steps: int = 400
    warmup_steps: float = 0.05
    lr_scheduler_type: SchedulerType | str = "cosine"
    max_grad_norm: float = 5.0


class PairCollator:
    """Processes dataset rows into model inputs: images and captions (and the log-mel `input_features` that
    `with_audio_features` put on the rows, when `with_audio`), or images only (the image-only baseline). Captions
    longer than the model reads are cut (`truncation`: user data, whose cut the run logs)."""

    def __init__(self, processor, with_text: bool = True, with_audio: bool = False, truncation: bool = False):
        self.processor, self.with_text, self.with_audio, self.truncation = processor, with_text, with_audio, truncation

    def __call__(self, rows: list[dict]) -> dict:
        images = [row["image"] for row in rows]
        if not self.with_text:
            return dict(self.processor(images=images))
        batch = dict(self.processor(images=images, text=[row["text"] for row in rows], truncation=self.truncation))
        if self.with_audio:
            batch["input_features"] = torch.as_tensor(np.stack([np.asarray(row["input_features"], np.float32)
                                                                for row in rows]))
        return batch


def audio_features(processor, rows: datasets.Dataset, batch_size: int = 256) -> np.ndarray:
    """Log-mel features (rows, mel bins, frames) of the rows' `audio` column (16 kHz waveforms), batch by batch."""
    clips = rows.select_columns(["audio"]).with_format("numpy")
    chunks = [processor(audio=list(clips[start:start + batch_size]["audio"]), sampling_rate=SAMPLING_RATE,
                        return_tensors="np")["input_features"] for start in range(0, len(rows), batch_size)]
    return np.concatenate(chunks)


def with_audio_features(processor, rows: datasets.Dataset) -> datasets.Dataset:
    """`rows` with the waveforms replaced by their log-mel features (an `input_features` Array2D column), computed
    once here rather than at every batch (the STFT of a batch costs as much as a training step)."""
    features = audio_features(processor, rows)
    column = datasets.Dataset.from_dict(
        {"input_features": features},
        features=datasets.Features({"input_features": datasets.Array2D(features.shape[1:], "float32")}))
    return datasets.concatenate_datasets([rows.remove_columns("audio"), column], axis=1)


@torch.no_grad()
def posterior_means(model, processor, images=None, texts=None, audio=None, batch_size: int = 128,
                    truncation: bool = False) -> torch.Tensor:
    """Posterior means of unimodal inputs (images, captions, or 16 kHz waveforms), batch by batch."""
    given = [(name, items) for name, items in (("images", images), ("text", texts), ("audio", audio)) if items is not None]
    if len(given) != 1:
        raise ValueError(f"posterior_means encodes one modality at a time: pass one of images=, texts=, audio= (got "
                         f"{[name for name, _ in given]}).")
    name, items = given[0]
    items = list(items)  # a datasets Column slices into Columns
    extra = {"text": {"truncation": truncation}, "audio": {"sampling_rate": SAMPLING_RATE}}.get(name, {})
    means = []
    for start in range(0, len(items), batch_size):
        means.append(model.encode(**processor(**{name: items[start:start + batch_size]}, **extra)).latent_mean)
    return torch.cat(means)


def colour_vectors(latents: torch.Tensor, colours: list[str]) -> dict[str, torch.Tensor]:
    """The mean latent of the rows of each colour: the attribute vectors of the arithmetic."""
    colours = list(colours)
    return {colour: latents[[i for i, c in enumerate(colours) if c == colour]].mean(0) for colour in COLOURS
            if colour in colours}


@torch.no_grad()
def read_images(model, processor, latents: torch.Tensor) -> list[dict]:
    return [analyse_attribute_scene(image) for image in processor.postprocess(model.decode_image(latents))]


@torch.no_grad()
def read_captions(model, processor, latents: torch.Tensor) -> list[dict]:
    return [caption_attributes(text) for text in processor.batch_decode(model.generate_text(latents))]


def arithmetic_cases(test: datasets.Dataset) -> list[tuple[int, str]]:
    """(source row, target colour) for every test row and every colour other than its own."""
    return [(index, colour) for index, row_colour in enumerate(test["colour"]) for colour in COLOURS if colour != row_colour]


@torch.no_grad()
def score_arithmetic(model, processor, test: datasets.Dataset, image_latents: torch.Tensor,
                     vectors: dict[str, torch.Tensor], held: set, with_captions: bool) -> dict:
    """Decode z(source image) − v(source colour) + v(target colour) for every case and score the results (image,
    and caption when `with_captions`) against colour b with the source's shape and position."""
    cases = arithmetic_cases(test)
    sources = torch.stack([image_latents[i] for i, _ in cases])
    minus = torch.stack([vectors[test[i]["colour"]] for i, _ in cases])
    plus = torch.stack([vectors[colour] for _, colour in cases])
    latents = model.arithmetic(sources, minus, plus)
    expected = [{"colour": colour, "shape": test[i]["shape"], "position": test[i]["position"]} for i, colour in cases]
    found = read_images(model, processor, latents)
    on_held = [k for k, e in enumerate(expected) if (e["colour"], e["shape"], e["position"]) in held]
    result = {"image": score(found, expected),
              "image_held_out": score([found[k] for k in on_held], [expected[k] for k in on_held])}
    if with_captions:
        result["caption"] = score(read_captions(model, processor, latents), expected)
    return result


def split_scores(found: list[dict], expected: list[dict], held_out: list[bool]) -> dict:
    held = [k for k, h in enumerate(held_out) if h]
    return {"all": score(found, expected), "held_out": score([found[k] for k in held], [expected[k] for k in held])}


def image_only_config(config):
    """The image-only baseline's configuration: `config` with product-of-experts fusion (a plain VAE on one modality)
    and no audio modules."""
    return type(config)(**{**config.to_diff_dict(), "fusion": "poe", "audio_modality": False})


# ---- user datasets: what can be measured without the analyser -------------------------------------------------------
def in_vocabulary(processor, captions) -> list[bool]:
    """Whether each caption's words are all in the processor's vocabulary (the processor refuses other words)."""
    vocabulary = processor.vocabulary
    return [set(words_of(caption)) <= vocabulary for caption in captions]


def word_vectors(latents: torch.Tensor, captions: list[str], words) -> dict[str, torch.Tensor]:
    """v(word): the mean latent of the captions that contain the word (as `colour_vectors` for the scenes)."""
    sets = [set(words_of(caption)) for caption in captions]
    return {word: latents[[word in s for s in sets]].mean(0) for word in words}


def pick_edit_words(captions: list[str]) -> tuple[str, str]:
    """Two caption words to swap by arithmetic when the user gives none: among the 30 most frequent words that are in
    at most half the captions (so not "a" or "the"), the pair with the most captions holding one and not the other
    (the smaller of the two counts), ties to the more frequent words. Raises ValueError when no such pair exists."""
    sets = [set(words_of(caption)) for caption in captions]
    counts = Counter(word for s in sets for word in s)
    candidates = [w for w, n in counts.most_common() if n <= COMMON_WORD_SHARE * len(sets)][:30]

    def exclusive(a, b):
        return min(sum(a in s and b not in s for s in sets), sum(b in s and a not in s for s in sets))

    pairs = sorted(itertools.combinations(candidates, 2), key=lambda pair: -exclusive(*pair))
    if not pairs or exclusive(*pairs[0]) == 0:
        raise ValueError("Could not pick two caption words to swap by arithmetic (each must be in some training "
                         "captions without the other): pass --arithmetic_edits ROW:WORD_A:WORD_B.")
    return pairs[0]


def parse_edits(edits: list[str], scored: list[bool], train_words: set[str]) -> list[tuple[int, str, str]]:
    """`ROW:WORD_A:WORD_B` strings → (index among the scored test rows, word a, word b). ROW numbers the whole test
    split; `scored[i]` says whether test row i is scored (its caption's words are all known, its clip fits). Raises
    ValueError for another format, a row outside the test split or not scored, or a word no training caption holds
    (it has no vector)."""
    scored_index = {row: index for index, row in enumerate(i for i, keep in enumerate(scored) if keep)}
    parsed = []
    for item in edits:
        parts = item.split(":")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise ValueError(f"--arithmetic_edits {item!r}: write each edit as ROW:WORD_A:WORD_B (a test row number, the "
                             "word to remove, the word to add), e.g. 0:red:blue.")
        row, minus, plus = int(parts[0]), parts[1].strip().lower(), parts[2].strip().lower()
        if row >= len(scored):
            raise ValueError(f"--arithmetic_edits {item!r}: row {row} is outside the {len(scored)} test rows.")
        if row not in scored_index:
            raise ValueError(f"--arithmetic_edits {item!r}: test row {row} is not scored (its caption has a word no "
                             "training caption holds, or its clip is longer than --max_audio_seconds): pick another "
                             "row.")
        unknown = [word for word in (minus, plus) if word not in train_words]
        if unknown:
            raise ValueError(f"--arithmetic_edits {item!r}: {unknown} appear in no training caption, so they have no "
                             "vector; use words of the training captions.")
        parsed.append((scored_index[row], minus, plus))
    return parsed


@torch.no_grad()
def heldout_elbo_terms(model, batches, image_only: bool = False, seed: int = 0) -> dict:
    """Mean −log p(x_m|z) per modality and KL (nats per example) over `batches` of model inputs, z drawn from the
    posterior with a seeded generator; with `image_only`, from the image posterior alone (what the image-only
    baseline has). `negative_elbo_image` = image NLL + KL (β = 1), a bound on −log p(image)."""
    generator = torch.Generator().manual_seed(seed)
    sums, rows = Counter(), 0
    for batch in batches:
        inputs = {"pixel_values": batch["pixel_values"]} if image_only else batch
        output = model(**inputs, sample_posterior=True, generator=generator)
        for name in ("image_nll", "text_nll", "audio_nll", "kl"):
            value = getattr(output, name)
            if value is not None:
                sums[name] += float(value.float().sum())
        rows += len(batch["pixel_values"])
    terms = {name: total / rows for name, total in sums.items()}
    if image_only:
        terms["negative_elbo_image"] = terms["image_nll"] + terms["kl"]
    return terms


class MultimodalVAERecipe(Recipe):
    """The multimodal VAE on the built-in attribute scenes, scored by latent arithmetic and cross-modal generation
    against chance and the image-only VAE trained in the same run; or on a user's image + caption dataset, scored by
    held-out ELBO terms, latent-space retrieval and caption-scored arithmetic."""

    name = "multimodal_vae"
    description = ("Train a multimodal VAE (MVAE product of experts or MMVAE mixture of experts) on images and captions "
                   "(and optionally spoken captions) and score cross-modal latent arithmetic and generation against "
                   "chance and an image-only VAE.")
    argument_classes = {"model": MultimodalVAEModelArguments, "data": MultimodalVAEDataArguments,
                        "training": MultimodalVAETrainingArguments}
    help_notes = ("Data: the built-in attribute scenes (6 colours x 3 shapes x 4 positions, captioned \"a red circle in "
                  "the top left\"); --num_held_out_combinations of the 72 combinations never appear in training and "
                  "are scored separately. Every combination is scored by the scene analyser (images) and the caption "
                  "words (captions). A user dataset (--dataset_name, with --image_column / --text_column and, with "
                  "--audio true, --audio_column) is scored without an analyser: held-out ELBO terms, caption -> image "
                  "retrieval R@1 in latent space and caption-scored arithmetic. " + held_out_help(("test",)))

    @staticmethod
    def builtin(args) -> bool:
        return args.data.dataset_name == BUILTIN_DATASET

    def load_data(self, args):
        data, audio = args.data, args.model.audio
        if self.builtin(args):
            splits = load_attribute_scenes(data.num_train_images, data.image_size, data.num_held_out_combinations,
                                           data.data_seed_builtin, audio=audio)
            args.held = {(r["colour"], r["shape"], r["position"]) for r in splits["test"] if r["held_out"]}
            return splits
        if audio:
            splits = load_user_trimodal_dataset(data.dataset_name, data.image_column, data.text_column,
                                                data.audio_column, sampling_rate=data.audio_sampling_rate)
            splits = datasets.DatasetDict({name: rows.select_columns(["image", "text", "audio"])
                                           for name, rows in splits.items()})
        else:
            splits = load_user_dataset(data.dataset_name, {data.image_column: "image", data.text_column: "text"},
                                       held_out=("test",)).data
        for name, rows in splits.items():
            blank = [i for i, text in enumerate(rows["text"]) if not isinstance(text, str) or not words_of(text)]
            if blank:
                raise ValueError(f"The {name} split of {data.dataset_name!r} has {len(blank)} rows whose "
                                 f"{data.text_column!r} holds no words (first: row {blank[0]}): drop them first.")
        return splits

    def max_text_length(self, args, data) -> int:
        if args.data.max_text_length is not None:
            return args.data.max_text_length
        if self.builtin(args):
            return 16
        return max(len(words_of(text)) for text in data["train"]["text"])

    def max_audio_seconds(self, args, data) -> int:
        if args.data.max_audio_seconds is not None:
            return args.data.max_audio_seconds
        if self.builtin(args) or not args.model.audio:
            return 3
        return math.ceil(max(audio_lengths(data["train"])) / SAMPLING_RATE)

    def build(self, args, data):
        model, processor = self.model_and_processor(args, data)
        if args.model.audio:
            longest = max(audio_lengths(data["train"]))
            if longest > processor.max_audio_samples:
                raise ValueError(f"The longest training clip lasts {longest / SAMPLING_RATE:.2f} s; the model reads at most "
                                 f"{processor.feature_extractor.chunk_length} s: raise --max_audio_seconds (or leave it "
                                 "out: the longest training clip, rounded up) or trim the clips.")
        if not self.builtin(args):
            self.prepare_user_scoring(args, processor, data)
        return model, processor

    def prepare_user_scoring(self, args, processor, data) -> None:
        """Before training, so that a bad `--arithmetic_edits` fails at once: the test rows the model can read (their
        captions use only its vocabulary) and the parsed edits."""
        test = data["test"]
        known = in_vocabulary(processor, test["text"])
        if not any(known):
            raise ValueError(f"Every test caption of {args.data.dataset_name!r} has words no training caption has, so the "
                             "model cannot read any of them: give a test split with the training vocabulary.")
        if not all(known):
            logger.warning("%d of %d test rows have caption words outside the training vocabulary and are not scored.",
                           len(known) - sum(known), len(known))
        if args.model.audio:
            fits = [length <= processor.max_audio_samples for length in audio_lengths(test)]
            if not all(fits):
                logger.warning("%d test clips are longer than %d s (--max_audio_seconds) and are not scored.",
                               len(fits) - sum(fits), processor.feature_extractor.chunk_length)
            known = [k and f for k, f in zip(known, fits)]
            if not any(known):
                raise ValueError("No test row has both a caption in the training vocabulary and a clip the model reads: "
                                 "raise --max_audio_seconds.")
        args.test_rows = len(known)
        args.scored_test = test.select([i for i, k in enumerate(known) if k]) if not all(known) else test
        args.given_edits = None
        if args.data.arithmetic_edits:
            train_words = {word for caption in set(data["train"]["text"]) for word in words_of(caption)}
            args.given_edits = parse_edits(args.data.arithmetic_edits, known, train_words)

    def model_and_processor(self, args, data):
        if args.model.model_name_or_path:
            path = args.model.model_name_or_path
            model = AutoModel.from_pretrained(path)
            if not isinstance(model, MultimodalVAEModel):
                raise ValueError(f"{path} holds a {model.config.model_type!r} model, not a multimodal VAE.")
            if args.model.audio and not model.config.audio_modality:
                raise ValueError(f"--audio true, but {path} was trained without audio (audio_modality=False): leave "
                                 "out --audio or start from a fresh model.")
            return model, AutoProcessor.from_pretrained(path)
        # Built-in scenes: every word of the test captions appears in training captions (each value is in ≥ 2 trained
        # combinations). A user's test captions may hold other words: `user_scores` leaves those rows out.
        processor = MultimodalVAEProcessor.for_captions(sorted(set(data["train"]["text"])), image_size=args.data.image_size,
                                                        max_text_length=self.max_text_length(args, data),
                                                        max_audio_seconds=self.max_audio_seconds(args, data))
        return MultimodalVAEModel(self.config(args, processor)), processor

    def config(self, args, processor):
        m = args.model
        overrides = {} if m.latent_dim is None else {"latent_dim": m.latent_dim}
        return multimodal_vae_config_for(
            m.model_size, **processor.config_kwargs(), fusion=m.fusion, text_weight=m.text_weight, beta=m.beta,
            audio_modality=m.audio, audio_weight=m.audio_weight,
            kl_warmup_steps=round(args.training.max_steps * m.kl_warmup_fraction), **overrides)

    def train_dataset(self, args, processor, data):
        if not args.model.audio:
            return data["train"]
        if getattr(args, "train_with_features", None) is None:
            args.train_with_features = with_audio_features(processor, data["train"])
        return args.train_with_features

    def collator(self, args, processor, data):
        if not self.builtin(args):
            limit = processor.tokenizer.model_max_length
            cut = sum(len(words_of(text)) > limit for text in data["train"]["text"])
            if cut:
                logger.warning("%d training captions are longer than %d words and are cut to their first %d words.",
                               cut, limit, limit)
        return PairCollator(processor, with_audio=args.model.audio, truncation=not self.builtin(args))

    def callbacks(self, args, model, processor, data, checkpoint):
        return [ScheduleStepCallback()]

    def image_only_model(self, args, model, processor, data):
        """The baseline: the same network, seed, images and steps, trained without captions, as a plain VAE: with one
        modality the product of experts is the image expert times the prior, a Gaussian posterior with the analytic KL
        (Kingma & Welling 2014, App. B), whatever the multimodal model's fusion (a one-expert mixture would estimate
        the KL from one sample: a noisier objective for the same model)."""
        logger.info("Training the image-only baseline (same network, images and steps, no captions)")
        torch.manual_seed(args.training.seed)
        baseline = MultimodalVAEModel(image_only_config(model.config))
        training = args.training.__class__(**{**args.training.to_dict(), "output_dir": str(
            Path(args.training.output_dir) / "image_only"), "save_strategy": "no", "resume_from_checkpoint": None})
        Trainer(model=baseline, args=training, train_dataset=data["train"],
                data_collator=PairCollator(processor, with_text=False), callbacks=[ScheduleStepCallback()]).train()
        return baseline.cpu().eval()

    def evaluate(self, args, trainer, model, processor, data):
        # The baseline trains first (with gradients); everything after only reads the models.
        args.baseline = self.image_only_model(args, model, processor, data) if args.model.image_only_baseline else None
        with torch.no_grad():
            if self.builtin(args):
                return self.scores(args, model, processor, data)
            return self.user_scores(args, model, processor, data)

    def scores(self, args, model, processor, data):
        model.cpu().eval()
        train, test = data["train"], data["test"]
        expected = [{key: row[key] for key in ATTRIBUTES} for row in test]
        held_out = list(test["held_out"])
        # Attribute vectors from each trained combination once, whatever its count among the training rows.
        unique = train.select(sorted({text: i for i, text in enumerate(train["text"])}.values()))
        text_vectors = colour_vectors(posterior_means(model, processor, texts=unique["text"]), unique["colour"])
        image_vectors = colour_vectors(posterior_means(model, processor, images=unique["image"]), unique["colour"])
        image_latents = posterior_means(model, processor, images=test["image"])
        text_latents = posterior_means(model, processor, texts=test["text"])
        multimodal = score_arithmetic(model, processor, test, image_latents, text_vectors, args.held, True)
        multimodal["image_vectors"] = score_arithmetic(model, processor, test, image_latents, image_vectors,
                                                       args.held, False)["image"]
        results = {
            "model_type": model.config.model_type, "dataset": args.data.dataset_name, "fusion": model.config.fusion,
            "modalities": list(model.config.modalities),
            "image_size": args.data.image_size, "train_rows": len(train), "combinations": len(test),
            "held_out_combinations": sum(held_out), "chance": chance_scores(),
            "arithmetic": {"cases": len(arithmetic_cases(test)), "multimodal": multimodal,
                           "held_out_cases": sum(1 for i, c in arithmetic_cases(test)
                                                 if (c, test[i]["shape"], test[i]["position"]) in args.held)},
            "text_to_image": split_scores(read_images(model, processor, text_latents), expected, held_out),
            "image_to_text": split_scores(read_captions(model, processor, image_latents), expected, held_out),
            "reconstruction": split_scores(read_images(model, processor, image_latents), expected, held_out),
        }
        if args.model.audio:  # (an audio model fine-tuned without --audio has no clips to score)
            # Spoken captions: the training rows' clips of each trained combination (their voices vary), and the
            # test clips in a voice never heard saying that caption.
            spoken = train.select(sorted({(text, voice): i for i, (text, voice)
                                          in enumerate(zip(train["text"], train["voice"]))}.values()))
            speech_vectors = colour_vectors(posterior_means(model, processor, audio=audio_clips(spoken)),
                                            spoken["colour"])
            speech_latents = posterior_means(model, processor, audio=audio_clips(test))
            multimodal["speech_vectors"] = score_arithmetic(model, processor, test, image_latents, speech_vectors,
                                                            args.held, False)["image"]
            results["speech_to_image"] = split_scores(read_images(model, processor, speech_latents), expected, held_out)
            results["speech_to_text"] = split_scores(read_captions(model, processor, speech_latents), expected, held_out)
        if args.baseline is not None:
            baseline_vectors = colour_vectors(posterior_means(args.baseline, processor, images=unique["image"]),
                                              unique["colour"])
            baseline_latents = posterior_means(args.baseline, processor, images=test["image"])
            args.baseline_arithmetic = (baseline_latents, baseline_vectors)
            results["arithmetic"]["image_only"] = score_arithmetic(args.baseline, processor, test, baseline_latents,
                                                                   baseline_vectors, args.held, False)
        else:
            results["arithmetic"]["image_only"] = {"image": None, "image_held_out": None}
        args.vectors, args.image_latents, args.text_latents = text_vectors, image_latents, text_latents
        return results

    def user_scores(self, args, model, processor, data):
        """Held-out measures that need no analyser (see the module docstring), on the test rows whose captions use
        only training words."""
        model.cpu().eval()
        train, test = data["train"], args.scored_test
        collate = PairCollator(processor, with_audio=args.model.audio, truncation=True)
        scored = with_audio_features(processor, test) if args.model.audio else test
        batches = [collate([scored[i] for i in range(start, min(start + 64, len(scored)))])
                   for start in range(0, len(scored), 64)]
        elbo = {"multimodal_joint": heldout_elbo_terms(model, batches),
                "multimodal_image_only": heldout_elbo_terms(model, batches, image_only=True)}
        if args.baseline is not None:
            elbo["image_only_vae"] = heldout_elbo_terms(args.baseline, batches, image_only=True)
        image_latents = posterior_means(model, processor, images=test["image"])
        text_latents = posterior_means(model, processor, texts=test["text"], truncation=True)
        retrieval = {"caption_to_image": retrieval_recall(text_latents, image_latents),
                     "image_to_caption": retrieval_recall(image_latents, text_latents),
                     "chance": retrieval_chance(len(test))}
        if args.model.audio:
            speech_latents = posterior_means(model, processor, audio=audio_clips(test))
            retrieval["speech_to_image"] = retrieval_recall(speech_latents, image_latents)
        # Arithmetic: word vectors from the unique training captions, edits given or picked from the captions.
        captions = sorted(set(train["text"]))
        test_captions = list(test["text"])
        if args.given_edits:
            edits = scored_edits = args.given_edits
            source = "given"
        else:
            minus, plus = pick_edit_words(captions)
            # Both directions: rows naming a (not b) get a → b, rows naming b (not a) get b → a.
            scored_edits = [(i, a, b) for a, b in ((minus, plus), (plus, minus)) for i, caption in enumerate(test_captions)
                            if a in words_of(caption) and b not in words_of(caption)]
            if not scored_edits:
                raise ValueError(f"No test caption holds {minus!r} or {plus!r} (the words picked from the training "
                                 "captions): pass --arithmetic_edits ROW:WORD_A:WORD_B.")
            edits, source = scored_edits[:SHOWN_EDITS], f"picked from the captions: {minus!r} <-> {plus!r}"
        vectors = word_vectors(posterior_means(model, processor, texts=captions, truncation=True), captions,
                               {w for _, a, b in scored_edits for w in (a, b)})
        latents = model.arithmetic(image_latents[[i for i, _, _ in scored_edits]],
                                   torch.stack([vectors[a] for _, a, _ in scored_edits]),
                                   torch.stack([vectors[b] for _, _, b in scored_edits]))
        generated = processor.batch_decode(model.generate_text(latents))
        unedited = processor.batch_decode(model.generate_text(image_latents[[i for i, _, _ in scored_edits]]))

        def rate(texts):
            return float(np.mean([b in words_of(t) and a not in words_of(t) for t, (_, a, b) in zip(texts, scored_edits)]))

        args.user_edits, args.image_latents, args.vectors = edits, image_latents, vectors
        return {
            "model_type": model.config.model_type, "dataset": args.data.dataset_name, "fusion": model.config.fusion,
            "modalities": list(model.config.modalities), "image_size": args.data.image_size, "train_rows": len(train),
            "test_rows": args.test_rows, "test_rows_scored": len(test), "analyser_scores": None, "note": ANALYSER_NOTE,
            "heldout_elbo_nats": elbo, "retrieval": retrieval,
            "arithmetic": {"edits": source, "cases": len(scored_edits),
                           # The caption generated from z(image) − v(a) + v(b) names b and not a, against the caption
                           # of the unedited z(image) doing so (the rows hold a, so mostly not).
                           "caption_has_b_not_a": rate(generated), "unedited_caption_has_b_not_a": rate(unedited),
                           "examples": [{"row": i, "source_caption": test_captions[i], "minus": a, "plus": b,
                                         "result_caption": text} for (i, a, b), text in zip(edits, generated)]},
        }

    @torch.no_grad()
    def figures(self, args, model, processor, data, results, out):
        if not self.builtin(args):
            return self.user_figures(args, model, processor, out)
        test = data["test"]
        shown = list(range(0, len(test), max(1, len(test) // 10)))[:10]
        # Each example a different step round the colour wheel, so that the figure shows every target colour.
        names = list(COLOURS)
        targets = [names[(names.index(test[i]["colour"]) + 1 + k % (len(names) - 1)) % len(names)]
                   for k, i in enumerate(shown)]

        def edit(m, latents, vectors):
            z = m.arithmetic(torch.stack([latents[i] for i in shown]),
                             torch.stack([vectors[test[i]["colour"]] for i in shown]),
                             torch.stack([vectors[c] for c in targets]))
            return z, processor.postprocess(m.decode_image(z))

        z, edited = edit(model, args.image_latents, args.vectors)
        rows = [[test[i]["image"] for i in shown], edited]
        labels = ["source", "multimodal: z - v(a) + v(b)"]
        if args.baseline is not None:
            rows.append(edit(args.baseline, *args.baseline_arithmetic)[1])
            labels.append("image-only VAE")
        rows.append([render_prompt_scene(test[i]["shape"], c, test[i]["position"], args.data.image_size)
                     for i, c in zip(shown, targets)])
        labels.append("target")
        captions = processor.batch_decode(model.generate_text(z))
        logger.info("Arithmetic captions: %s", captions)
        title = f"multimodal VAE ({model.config.fusion}): image - colour a + colour b (words: {captions[0]!r}, ...)"
        figures = [image_grid(rows, out / "arithmetic.png", labels, title=title)]
        drawn = processor.postprocess(model.decode_image(args.text_latents[shown]))
        figures.append(image_grid([[test[i]["image"] for i in shown], drawn], out / "cross_modal.png",
                                  ["caption's scene", "caption -> image"],
                                  title="multimodal VAE: images drawn from the caption alone"))
        return figures

    def user_figures(self, args, model, processor, out):
        """The arithmetic grid of a user dataset: source | its reconstruction | z(image) − v(a) + v(b) decoded."""
        test, edits = args.scored_test, args.user_edits
        rows = [i for i, _, _ in edits]
        z = model.arithmetic(args.image_latents[rows], torch.stack([args.vectors[a] for _, a, _ in edits]),
                             torch.stack([args.vectors[b] for _, _, b in edits]))
        grid = [[test[i]["image"].convert("RGB") for i in rows],
                processor.postprocess(model.decode_image(args.image_latents[rows])), processor.postprocess(model.decode_image(z))]
        title = "multimodal VAE: image - v(a) + v(b): " + ", ".join(f"{a}->{b}" for _, a, b in edits[:4])
        return [image_grid(grid, out / "arithmetic.png", ["source", "reconstruction", "z - v(a) + v(b)"], title=title)]

    results_table = staticmethod(multimodal_vae_results_table)


def audio_lengths(rows: datasets.Dataset) -> list[int]:
    """Samples of each row's `audio` waveform (list lengths in Arrow, without reading the samples; through the
    arrow format so that a `select`ed split's index mapping applies)."""
    return pc.list_value_length(rows.with_format("arrow")["audio"]).to_pylist()


def audio_clips(rows: datasets.Dataset) -> list[np.ndarray]:
    """The rows' `audio` waveforms as float32 arrays (read once as numpy, not as Python float lists)."""
    return list(rows.select_columns(["audio"]).with_format("numpy")["audio"])


MULTIMODAL_VAE_RECIPE = MultimodalVAERecipe()
main = MULTIMODAL_VAE_RECIPE.main

__all__ = ["MULTIMODAL_VAE_RECIPE", "MultimodalVAERecipe", "PairCollator", "audio_features", "colour_vectors",
           "image_only_config", "main", "pick_edit_words", "posterior_means", "score_arithmetic", "with_audio_features",
           "word_vectors"]
