"""Training, evaluation and figures for the image autoencoders (continuous VAE and DALL-E dVAE), shared by
`examples/run_autoencoder.py`, `hf-mmdl autoencoder` and `hf-mmdl quickstart`.

Proof of learning is measured on held-out images in the same run: reconstruction MSE/PSNR against the mean training
image as a baseline; for the VAE also bits/dim, for the dVAE codebook perplexity, codes used and the gap between its
relaxed (soft) and argmax (hard) reconstructions as the gumbel temperature falls.
"""

import logging
import math
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoModel, AutoProcessor, TrainerCallback
from transformers.trainer_utils import SchedulerType

from ..data import load_image_dataset
from ..data.user import held_out_help
from ..architectures.autoencoders import autoencoder_results_table
from ..modeling import DiscreteVAEModel, ImageVAEModel
from ..modeling.configuration_dvae import dvae_config_for
from ..modeling.configuration_vae import image_vae_config_for
from ..processing import DiscreteVAEImageProcessor, ImageVAEImageProcessor
from ..visualization import image_grid, line_chart
from .common import ScheduleStepCallback
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)

GREY_DATASETS = ("mnist",)


@dataclass
class AutoencoderModelArguments:
    model_type: str = field(default="dvae", metadata={
        "help": "'vae' (continuous ImageVAEModel) or 'dvae' (DALL-E dVAE); `hf-mmdl train vae|dvae` sets it."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved autoencoder folder or Hub id to fine-tune; default: a fresh model."}
    )
    model_size: str = field(
        default="small",
        metadata={"help": "Fresh model size: 'tiny' (tests), 'small' (CPU minutes), 'released' (dVAE: DALL-E's 97.6M)."},
    )
    likelihood: str = field(default="gaussian", metadata={"help": "VAE p(x|z): 'gaussian' (learned σ) or 'bernoulli'."})
    latent_type: str = field(default="vector", metadata={"help": "VAE latent: 'vector' (latent_dim numbers) or 'spatial'."})
    latent_dim: int = field(default=32, metadata={"help": "VAE vector latent size."})
    beta: float | None = field(
        default=None, metadata={"help": "KL weight: the VAE's β (default 1) or the dVAE's kl_weight (default 6.6)."}
    )
    kl_warmup_fraction: float | None = field(
        default=None, metadata={"help": "Fraction of max_steps over which β ramps up (default: VAE 0.1, dVAE 0.05)."}
    )
    temperature_anneal_fraction: float = field(
        default=0.6, metadata={"help": "dVAE: fraction of max_steps over which τ falls 1 → 1/16 (cosine)."}
    )


@dataclass
class AutoencoderDataArguments:
    dataset_name: str = field(
        default="mnist",
        metadata={"help": "'mnist', 'scenes' or 'twemoji' (built in), or a datasets Hub name / local path with images."},
    )
    image_column: str = field(default="image", metadata={"help": "Image column of a non-built-in dataset."})
    image_size: int = field(default=32, metadata={"help": "Side of the square training images."})
    num_train_images: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    num_eval_images: int = field(default=500, metadata={"help": "Held-out images for validation."})
    data_seed_builtin: int = field(default=0, metadata={"help": "Seed of the built-in split / generator."})


@dataclass
class AutoencoderTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/autoencoder")
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Gradients of the relaxed objective are large while τ is high; clipping them at Trainer's default of 1 stalls
    # the encoder (DALL-E's App. A.2 names no clipping).
    max_grad_norm: float = 0.0
    max_steps: int = 1200
    lr_scheduler_type: SchedulerType | str = "cosine_with_min_lr"
    lr_scheduler_kwargs: dict | str | None = field(default_factory=lambda: {"min_lr": 1e-5})
    track_every: int = field(
        default=100, metadata={"help": "Steps between held-out reconstruction checks (soft vs hard for the dVAE)."}
    )


def autoencoder_config(model_args: AutoencoderModelArguments, image_size: int, channels: int, max_steps: int):
    """A fresh configuration of the requested kind and size, with its schedules set as fractions of `max_steps`."""
    return AUTOENCODER_RECIPES[checked_model_type(model_args.model_type)].config(model_args, image_size, channels, max_steps)


def checked_model_type(model_type: str) -> str:
    if model_type not in AUTOENCODER_RECIPES:
        raise ValueError(f"model_type must be 'vae' or 'dvae', got {model_type!r}.")
    return model_type


class AutoencoderCollator:
    """Runs the processor over a batch of dataset rows with an `image` column."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict:
        return {"pixel_values": self.processor(images=[row["image"] for row in rows])["pixel_values"]}


def _batches(tensor: torch.Tensor, size: int):
    return (tensor[i : i + size] for i in range(0, len(tensor), size))


def codebook_usage(tokens: torch.LongTensor, vocab_size: int) -> dict:
    """Perplexity exp(−Σ p_k ln p_k) of the token distribution and the number of distinct codes used."""
    counts = torch.bincount(tokens.flatten(), minlength=vocab_size).double()
    probabilities = counts[counts > 0] / counts.sum()
    return {"perplexity": math.exp(-(probabilities * probabilities.log()).sum().item()), "codes_used": int((counts > 0).sum())}


@torch.no_grad()
def evaluate_autoencoder(model, processor, pixel_values: torch.Tensor, mean_image: torch.Tensor | None = None,
                         batch_size: int = 128, seed: int = 0) -> dict:
    """Held-out metrics on model inputs `pixel_values`; `mean_image` ([0, 1]) gives the baseline's MSE/PSNR."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    targets = processor.to_unit_range(pixel_values)
    discrete = isinstance(model, DiscreteVAEModel)
    if discrete:  # encode once: the tokens give both the hard reconstruction and the codebook statistics
        tokens = torch.cat([model.get_codebook_indices(batch) for batch in _batches(pixel_values, batch_size)])
        hard = torch.cat([model.decode_code(batch) for batch in _batches(tokens, batch_size)]).float()
    else:
        hard = torch.cat([model.reconstruct(batch) for batch in _batches(pixel_values, batch_size)]).float()
    mse = ((hard - targets) ** 2).mean().item()
    metrics = {"mse": mse, "psnr": 10 * math.log10(1 / mse)}
    if mean_image is not None:
        baseline = ((mean_image - targets) ** 2).mean().item()
        metrics |= {"mean_image_mse": baseline, "mean_image_psnr": 10 * math.log10(1 / baseline)}
    if discrete:
        soft = torch.cat([
            model(batch, relaxed=True, generator=generator, return_loss=False).reconstruction
            for batch in _batches(pixel_values, batch_size)
        ])
        soft_mse = ((soft - targets) ** 2).mean().item()
        metrics |= codebook_usage(tokens, model.config.vocab_size)
        metrics |= {"soft_mse": soft_mse, "soft_hard_gap": mse - soft_mse, "temperature": model.current_temperature()}
    else:
        # An unbiased ELBO estimate needs a posterior sample and, for a density, dequantised 8-bit pixels.
        bits = [
            model(batch + torch.rand(batch.shape, generator=generator).to(batch.device) * (2 / 256), sample_posterior=True,
                  generator=generator).bits_per_dim
            for batch in _batches(pixel_values, batch_size)
        ]
        metrics["bits_per_dim"] = torch.cat(bits).mean().item()
    model.train(was_training)
    return metrics


class ReconstructionTracker(TrainerCallback):
    """Every `every` steps, measures held-out reconstructions at the current point of the schedules (for the dVAE the
    soft-vs-hard gap at the current τ) and keeps the history for the results and the curve figure."""

    def __init__(self, processor, pixel_values: torch.Tensor, every: int):
        self.processor, self.pixel_values, self.every, self.history = processor, pixel_values, every, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.is_world_process_zero:
            metrics = evaluate_autoencoder(model, self.processor, self.pixel_values.to(model.device))
            self.history.append({"step": state.global_step, **metrics})
            logger.info("step %d: %s", state.global_step, {k: round(v, 4) for k, v in metrics.items()})


def mean_training_image(data: datasets.Dataset, processor, limit: int = 2000) -> torch.Tensor:
    images = data.select(range(min(limit, len(data))))["image"]
    return processor.to_unit_range(processor(images=images)["pixel_values"]).mean(0)


def reconstruction_rows(model, processor, shown: torch.Tensor) -> list[list]:
    return [processor.postprocess(processor.to_unit_range(shown)), processor.postprocess(model.reconstruct(shown))]


class AutoencoderRecipe(Recipe):
    """The part of the VAE and dVAE runs that is the same: image data (built-in or any `datasets` set with an image
    column), a fresh model from a size preset or a saved one, the step-driven schedules, held-out reconstructions
    tracked during training and measured at the end against the mean training image. Subclasses give the
    configuration (`config`) and their figures (`figure_rows_and_more`)."""

    model_type: str
    title: str
    argument_classes = {"model": AutoencoderModelArguments, "data": AutoencoderDataArguments,
                        "training": AutoencoderTrainingArguments}
    model_class: type
    processor_class: type
    help_notes = held_out_help(("validation",))

    @abstractmethod
    def config(self, model_args: AutoencoderModelArguments, image_size: int, channels: int, max_steps: int):
        """A fresh configuration from the size preset, with its schedules as fractions of `max_steps`."""

    @abstractmethod
    def figure_rows_and_more(self, model, processor, pixel_values: torch.Tensor, history: list[dict], out: Path,
                             title: str) -> tuple[list[list], list[str], list[Path]]:
        """Rows and labels of the reconstruction grid, and the architecture's other figures (saved here)."""

    def parser(self):
        parser = super().parser()
        parser.set_defaults(model_type=self.model_type)
        return parser

    def load_data(self, args):
        if args.model.model_type != self.model_type:
            raise ValueError(f"The {self.name} recipe trains --model_type {self.model_type!r}, not "
                             f"{args.model.model_type!r}: run `hf-mmdl train {args.model.model_type}` instead.")
        data = load_image_dataset(
            args.data.dataset_name, args.data.image_size, args.data.num_train_images, args.data.num_eval_images,
            args.data.data_seed_builtin, args.data.image_column,
        )
        return data

    def processor_for(self, data_args: AutoencoderDataArguments):
        size = data_args.image_size
        return self.processor_class(image_mode="L" if data_args.dataset_name in GREY_DATASETS else "RGB",
                                    size={"shortest_edge": size}, crop_size={"height": size, "width": size})

    def build(self, args, data):
        path = args.model.model_name_or_path
        if path:
            model = AutoModel.from_pretrained(path)
            if model.config.model_type != self.model_class.config_class.model_type:
                raise ValueError(f"{path} holds a {model.config.model_type!r} model, but --model_type "
                                 f"{args.model.model_type!r} was asked for.")
            return model, AutoProcessor.from_pretrained(path)
        processor = self.processor_for(args.data)
        channels = 3 if processor.image_mode == "RGB" else 1
        return self.model_class(self.config(args.model, args.data.image_size, channels, args.training.max_steps)), processor

    def collator(self, args, processor, data):
        return AutoencoderCollator(processor)

    def callbacks(self, args, model, processor, data, checkpoint):
        args.validation_pixels = processor(images=data["validation"]["image"])["pixel_values"]
        args.tracker = ReconstructionTracker(processor, args.validation_pixels[:256], args.training.track_every)
        return [ScheduleStepCallback(), args.tracker]

    def evaluate(self, args, trainer, model, processor, data):
        model.cpu()
        return {
            "model_type": model.config.model_type,
            "dataset": args.data.dataset_name,
            "image_size": args.data.image_size,
            "validation_images": len(args.validation_pixels),
            **({"vocab_size": model.config.vocab_size} if isinstance(model, DiscreteVAEModel) else {}),
            "validation": evaluate_autoencoder(model, processor, args.validation_pixels,
                                               mean_training_image(data["train"], processor)),
            "history": args.tracker.history,
        }

    def figures(self, args, model, processor, data, results, out):
        model.eval()
        title = f"{self.title} on {args.data.dataset_name}"
        rows, labels, figures = self.figure_rows_and_more(model, processor, args.validation_pixels, results["history"],
                                                          out, title)
        return [image_grid(rows, out / "reconstructions.png", labels, title=f"{title}: held-out images"), *figures]

    results_table = staticmethod(autoencoder_results_table)


class ImageVAERecipe(AutoencoderRecipe):
    """The continuous VAE: ELBO with β and KL warm-up; bits/dim, samples and interpolations."""

    name = "vae"
    model_type = "vae"
    title = "VAE"
    description = "Train and score a continuous image VAE (ELBO, β, KL warm-up) on built-in or user images."
    model_class = ImageVAEModel
    processor_class = ImageVAEImageProcessor

    def config(self, model_args, image_size, channels, max_steps):
        warmup = 0.1 if model_args.kl_warmup_fraction is None else model_args.kl_warmup_fraction
        return image_vae_config_for(
            model_args.model_size, in_channels=channels, sample_size=image_size, latent_type=model_args.latent_type,
            latent_dim=model_args.latent_dim, likelihood=model_args.likelihood,
            beta=1.0 if model_args.beta is None else model_args.beta, kl_warmup_steps=round(max_steps * warmup),
        )

    def figure_rows_and_more(self, model, processor, pixel_values, history, out, title):
        generator = torch.Generator().manual_seed(0)
        temperatures = (1.0, 0.8, 0.5)
        figures = [image_grid(
            [processor.postprocess(model.sample(12, temperature=t, generator=generator)) for t in temperatures],
            out / "samples.png", [f"t = {t}" for t in temperatures], title=f"{title}: samples z ~ N(0, t^2 I) decoded",
        )]
        pairs = [(2 * i, 2 * i + 1) for i in range(min(4, len(pixel_values) // 2))]  # a small set may hold out few
        figures.append(image_grid(
            [processor.postprocess(model.interpolate(pixel_values[a], pixel_values[b], steps=10)) for a, b in pairs],
            out / "interpolations.png", title=f"{title}: interpolation between posterior means",
        ))
        if history:
            figures.append(line_chart(
                {"held-out MSE": [(h["step"], h["mse"]) for h in history]},
                out / "training_curve.png", f"{title}: held-out reconstruction MSE", "training step", "MSE",
            ))
        return reconstruction_rows(model, processor, pixel_values[:12]), ["input", "reconstruction"], figures


class DiscreteVAERecipe(AutoencoderRecipe):
    """The DALL-E dVAE: relaxed ELBO with the τ and β schedules; codebook use and the soft-vs-hard gap."""

    name = "dvae"
    model_type = "dvae"
    title = "dVAE"
    description = "Train and score a DALL-E discrete VAE (gumbel-softmax relaxation, τ and β schedules)."
    model_class = DiscreteVAEModel
    processor_class = DiscreteVAEImageProcessor

    def config(self, model_args, image_size, channels, max_steps):
        warmup = 0.05 if model_args.kl_warmup_fraction is None else model_args.kl_warmup_fraction
        return dvae_config_for(
            model_args.model_size, in_channels=channels, kl_weight=6.6 if model_args.beta is None else model_args.beta,
            kl_warmup_steps=round(max_steps * warmup),
            temperature_anneal_steps=round(max_steps * model_args.temperature_anneal_fraction),
        )

    def figure_rows_and_more(self, model, processor, pixel_values, history, out, title):
        shown = pixel_values[:12]
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            soft = model(shown, relaxed=True, generator=generator, return_loss=False).reconstruction
        rows = [*reconstruction_rows(model, processor, shown), processor.postprocess(soft)]
        labels = ["input", "hard (argmax tokens)", f"soft (tau={model.current_temperature():.3g})"]
        figures = []
        if history:
            figures.append(line_chart(
                {"hard MSE": [(h["step"], h["mse"]) for h in history], "soft MSE": [(h["step"], h["soft_mse"]) for h in history],
                 "temperature tau / 10": [(h["step"], h["temperature"] / 10) for h in history]},
                out / "soft_vs_hard.png", f"{title}: held-out reconstruction MSE", "training step", "MSE",
            ))
        return rows, labels, figures


IMAGE_VAE_RECIPE = ImageVAERecipe()
DVAE_RECIPE = DiscreteVAERecipe()
AUTOENCODER_RECIPES = {"vae": IMAGE_VAE_RECIPE, "dvae": DVAE_RECIPE}


def run_autoencoder(
    model_args: AutoencoderModelArguments, data_args: AutoencoderDataArguments, training_args: AutoencoderTrainingArguments
) -> dict:
    """Train an ImageVAEModel or DiscreteVAEModel (by `model_args.model_type`) with Trainer, measure it and the
    mean-image baseline on held-out images, and save the model and processor (`from_pretrained`-loadable),
    `results.json` and PNG figures."""
    return AUTOENCODER_RECIPES[checked_model_type(model_args.model_type)].run(model_args, data_args, training_args)


def main(argv: list[str] | None = None) -> dict:
    """Command line of `examples/run_autoencoder.py` and `hf-mmdl autoencoder`: `--model_type vae|dvae` picks the
    recipe; every TrainingArguments flag plus the model and data flags above."""
    parser = IMAGE_VAE_RECIPE.parser()
    parser.prog = "hf-mmdl autoencoder"
    parser.description = parser.description.replace(
        IMAGE_VAE_RECIPE.description,
        "Train and score an image VAE (--model_type vae) or DALL-E dVAE (--model_type dvae).", 1)
    model_args, *_ = parser.parse_args_into_dataclasses(args=argv)
    return AUTOENCODER_RECIPES[checked_model_type(model_args.model_type)].main(argv)


__all__ = [
    "AUTOENCODER_RECIPES",
    "AutoencoderCollator",
    "AutoencoderDataArguments",
    "AutoencoderModelArguments",
    "AutoencoderRecipe",
    "AutoencoderTrainingArguments",
    "DVAE_RECIPE",
    "DiscreteVAERecipe",
    "IMAGE_VAE_RECIPE",
    "ImageVAERecipe",
    "ReconstructionTracker",
    "autoencoder_config",
    "codebook_usage",
    "evaluate_autoencoder",
    "run_autoencoder",
]
