"""Training and scoring of the multimodal VAE, shared by `examples/run_multimodal_vae.py`, `hf-mmdl train
multimodal_vae` and `hf-mmdl quickstart`.

The run trains the multimodal VAE on the built-in attribute scenes (image + caption pairs; some colour-shape-position
combinations held out) and, in the same run, the image-only baseline: the same network, images, seed and steps,
never shown a caption. Both are then scored by a deterministic reader of colour, shape and position
(`hf_mmdl.data.attribute_scenes`) on:

- latent arithmetic: for every combination and every other colour b, z(image) − v(colour a) + v(colour b), decoded
  into an image (both models) and a caption (the multimodal one). The attribute vector v(c) of the multimodal VAE is
  the mean text posterior of the training captions that name colour c — the direction comes from words. The
  image-only VAE has no text, so its v(c) is the mean image posterior of the training images of colour c; the
  multimodal VAE with that same image-mean vector is reported too, so that the gain from captions is separated
  from the gain from the vectors. A case counts as right when the result has colour b and the source's shape and
  position;
- cross-modal generation: caption → image (decode the text posterior mean) and image → caption (generate from the
  image posterior mean), and image → image reconstruction;
- against chance: a uniformly random guess of each attribute.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoModel, AutoProcessor, Trainer
from transformers.trainer_utils import SchedulerType

from ..architectures.multimodal_vae import multimodal_vae_results_table
from ..data.attribute_scenes import (
    ATTRIBUTES, analyse_attribute_scene, caption_attributes, chance_scores, load_attribute_scenes, score,
)
from ..data.scenes import COLOURS
from ..data.text_to_image import render_prompt_scene
from ..modeling import MultimodalVAEModel
from ..modeling.configuration_multimodal_vae import multimodal_vae_config_for
from ..processing import MultimodalVAEProcessor
from ..visualization import image_grid
from .common import ScheduleStepCallback
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)

BUILTIN_DATASET = "attribute_scenes"


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
    image_only_baseline: bool = field(default=True, metadata={
        "help": "Also train the image-only VAE (same network, images, seed and steps, no captions) and score its "
                "arithmetic with image-mean attribute vectors."})


@dataclass
class MultimodalVAEDataArguments:
    dataset_name: str = field(default=BUILTIN_DATASET, metadata={
        "help": "'attribute_scenes': the built-in scenes whose colour, shape and position the analyser reads back."})
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
    """Processes dataset rows into model inputs: images and captions, or images only (the image-only baseline)."""

    def __init__(self, processor, with_text: bool = True):
        self.processor, self.with_text = processor, with_text

    def __call__(self, rows: list[dict]) -> dict:
        images = [row["image"] for row in rows]
        if self.with_text:
            return dict(self.processor(images=images, text=[row["text"] for row in rows]))
        return dict(self.processor(images=images))


@torch.no_grad()
def posterior_means(model, processor, images=None, texts=None, batch_size: int = 128) -> torch.Tensor:
    """Posterior means of unimodal inputs (images, or captions), batch by batch."""
    items = list(images if images is not None else texts)  # a datasets Column slices into Columns
    means = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        inputs = processor(images=chunk) if images is not None else processor(text=chunk)
        means.append(model.encode(**inputs).latent_mean)
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
    """The image-only baseline's configuration: `config` with product-of-experts fusion (a plain VAE on one modality)."""
    return type(config)(**{**config.to_diff_dict(), "fusion": "poe"})


class MultimodalVAERecipe(Recipe):
    """The multimodal VAE on the built-in attribute scenes, scored by latent arithmetic and cross-modal generation
    against chance and the image-only VAE trained in the same run."""

    name = "multimodal_vae"
    description = ("Train a multimodal VAE (MVAE product of experts or MMVAE mixture of experts) on images and captions "
                   "and score cross-modal latent arithmetic and generation against chance and an image-only VAE.")
    argument_classes = {"model": MultimodalVAEModelArguments, "data": MultimodalVAEDataArguments,
                        "training": MultimodalVAETrainingArguments}
    help_notes = ("Data: the built-in attribute scenes (6 colours x 3 shapes x 4 positions, captioned \"a red circle in "
                  "the top left\"); --num_held_out_combinations of the 72 combinations never appear in training and "
                  "are scored separately. Every combination is scored by the scene analyser (images) and the caption "
                  "words (captions).")

    def load_data(self, args):
        data = args.data
        if data.dataset_name != BUILTIN_DATASET:
            raise ValueError(f"--dataset_name {data.dataset_name!r}: the multimodal VAE's arithmetic is scored by the "
                             f"analyser of the built-in scenes, so only {BUILTIN_DATASET!r} is supported.")
        splits = load_attribute_scenes(data.num_train_images, data.image_size, data.num_held_out_combinations,
                                       data.data_seed_builtin)
        args.held = {(r["colour"], r["shape"], r["position"]) for r in splits["test"] if r["held_out"]}
        return splits

    def build(self, args, data):
        if args.model.model_name_or_path:
            path = args.model.model_name_or_path
            model = AutoModel.from_pretrained(path)
            if not isinstance(model, MultimodalVAEModel):
                raise ValueError(f"{path} holds a {model.config.model_type!r} model, not a multimodal VAE.")
            return model, AutoProcessor.from_pretrained(path)
        # Every word of the test captions appears in training captions (each value is in ≥ 2 trained combinations).
        processor = MultimodalVAEProcessor.for_captions(sorted(set(data["train"]["text"])), image_size=args.data.image_size)
        return MultimodalVAEModel(self.config(args, processor)), processor

    def config(self, args, processor):
        m = args.model
        overrides = {} if m.latent_dim is None else {"latent_dim": m.latent_dim}
        return multimodal_vae_config_for(
            m.model_size, **processor.config_kwargs(), fusion=m.fusion, text_weight=m.text_weight, beta=m.beta,
            kl_warmup_steps=round(args.training.max_steps * m.kl_warmup_fraction), **overrides)

    def collator(self, args, processor, data):
        return PairCollator(processor)

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
            return self.scores(args, model, processor, data)

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
            "image_size": args.data.image_size, "train_rows": len(train), "combinations": len(test),
            "held_out_combinations": sum(held_out), "chance": chance_scores(),
            "arithmetic": {"cases": len(arithmetic_cases(test)), "multimodal": multimodal,
                           "held_out_cases": sum(1 for i, c in arithmetic_cases(test)
                                                 if (c, test[i]["shape"], test[i]["position"]) in args.held)},
            "text_to_image": split_scores(read_images(model, processor, text_latents), expected, held_out),
            "image_to_text": split_scores(read_captions(model, processor, image_latents), expected, held_out),
            "reconstruction": split_scores(read_images(model, processor, image_latents), expected, held_out),
        }
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

    @torch.no_grad()
    def figures(self, args, model, processor, data, results, out):
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

    results_table = staticmethod(multimodal_vae_results_table)


MULTIMODAL_VAE_RECIPE = MultimodalVAERecipe()
main = MULTIMODAL_VAE_RECIPE.main

__all__ = ["MULTIMODAL_VAE_RECIPE", "MultimodalVAERecipe", "PairCollator", "colour_vectors", "image_only_config", "main",
           "posterior_means", "score_arithmetic"]
