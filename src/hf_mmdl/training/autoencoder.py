"""Training, evaluation and figures for the image autoencoders (continuous VAE and DALL-E dVAE), shared by
`examples/run_autoencoder.py`, `hf-mmdl autoencoder` and `hf-mmdl quickstart`.

Proof of learning is measured on held-out images in the same run: reconstruction MSE/PSNR against the mean training
image as a baseline; for the VAE also bits/dim, for the dVAE codebook perplexity, codes used and the gap between its
relaxed (soft) and argmax (hard) reconstructions as the gumbel temperature falls.
"""

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoModel, AutoProcessor, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType

from ..data import load_image_dataset
from ..modeling import DiscreteVAEConfig, DiscreteVAEModel, ImageVAEConfig, ImageVAEModel
from ..processing import DiscreteVAEImageProcessor, ImageVAEImageProcessor
from ..visualization import image_grid, line_chart
from .common import ScheduleStepCallback, refuse_fsdp_on_cpu, resolve_checkpoint

logger = logging.getLogger(__name__)

MODEL_TYPES = {"vae": "image_vae", "dvae": "dvae"}
GREY_DATASETS = ("mnist",)


@dataclass
class AutoencoderModelArguments:
    model_type: str = field(default="dvae", metadata={"help": "'vae' (continuous ImageVAEModel) or 'dvae' (DALL-E dVAE)."})
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
class AutoencoderTrainingArguments(TrainingArguments):
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
    logging_steps: float = 50
    eval_strategy: IntervalStrategy | str = "no"
    save_strategy: SaveStrategy | str = "no"
    save_total_limit: int | None = 1
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0
    track_every: int = field(
        default=100, metadata={"help": "Steps between held-out reconstruction checks (soft vs hard for the dVAE)."}
    )


def autoencoder_config(model_args: AutoencoderModelArguments, image_size: int, channels: int, max_steps: int):
    """A fresh configuration of the requested kind and size, with its schedules set as fractions of `max_steps`."""
    size = model_args.model_size
    if model_args.model_type == "vae":
        widths = {"tiny": ((8, 16), 8), "small": ((16, 32, 64), 8)}
        if size not in widths:
            raise ValueError(f"VAE model_size must be one of {sorted(widths)}, got {size!r}.")
        blocks, groups = widths[size]
        return ImageVAEConfig(
            in_channels=channels,
            block_out_channels=blocks,
            down_block_types=("DownEncoderBlock2D",) * len(blocks),
            up_block_types=("UpDecoderBlock2D",) * len(blocks),
            norm_num_groups=groups,
            sample_size=image_size,
            latent_type=model_args.latent_type,
            latent_dim=model_args.latent_dim,
            likelihood=model_args.likelihood,
            beta=1.0 if model_args.beta is None else model_args.beta,
            kl_warmup_steps=round(max_steps * (0.1 if model_args.kl_warmup_fraction is None else model_args.kl_warmup_fraction)),
        )
    if model_args.model_type != "dvae":
        raise ValueError(f"model_type must be 'vae' or 'dvae', got {model_args.model_type!r}.")
    sizes = {
        "tiny": dict(group_count=2, n_blk_per_group=1, n_hid=16, vocab_size=64, n_init=16),
        "small": dict(group_count=3, n_blk_per_group=1, n_hid=32, vocab_size=512, n_init=64),
        "released": {},
    }
    if size not in sizes:
        raise ValueError(f"dVAE model_size must be one of {sorted(sizes)}, got {size!r}.")
    return DiscreteVAEConfig(
        **sizes[size],
        in_channels=channels,
        kl_weight=6.6 if model_args.beta is None else model_args.beta,
        kl_warmup_steps=round(max_steps * (0.05 if model_args.kl_warmup_fraction is None else model_args.kl_warmup_fraction)),
        temperature_anneal_steps=round(max_steps * model_args.temperature_anneal_fraction),
    )


def autoencoder_processor(model_type: str, image_size: int, channels: int):
    processor_class = ImageVAEImageProcessor if model_type == "vae" else DiscreteVAEImageProcessor
    return processor_class(
        image_mode="RGB" if channels == 3 else "L",
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


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


def load_autoencoder(model_args: AutoencoderModelArguments, data_args: AutoencoderDataArguments, max_steps: int):
    if model_args.model_name_or_path:
        model = AutoModel.from_pretrained(model_args.model_name_or_path)
        if model.config.model_type != MODEL_TYPES.get(model_args.model_type):
            raise ValueError(
                f"{model_args.model_name_or_path} holds a {model.config.model_type!r} model, but --model_type "
                f"{model_args.model_type!r} was asked for."
            )
        return model, AutoProcessor.from_pretrained(model_args.model_name_or_path)
    channels = 1 if data_args.dataset_name in GREY_DATASETS else 3
    config = autoencoder_config(model_args, data_args.image_size, channels, max_steps)
    model = (ImageVAEModel if model_args.model_type == "vae" else DiscreteVAEModel)(config)
    return model, autoencoder_processor(model_args.model_type, data_args.image_size, channels)


def mean_training_image(data: datasets.Dataset, processor, limit: int = 2000) -> torch.Tensor:
    images = data.select(range(min(limit, len(data))))["image"]
    return processor.to_unit_range(processor(images=images)["pixel_values"]).mean(0)


def save_figures(model, processor, pixel_values: torch.Tensor, history: list[dict], out: Path, title: str) -> list[Path]:
    """PNG grids of inputs vs reconstructions, and samples + interpolations (VAE) or the soft/hard curve (dVAE)."""
    model.eval()
    shown = pixel_values[:12]
    rows = [processor.postprocess(processor.to_unit_range(shown)), processor.postprocess(model.reconstruct(shown))]
    labels = ["input", "reconstruction"]
    figures = []
    if isinstance(model, DiscreteVAEModel):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            rows.append(processor.postprocess(model(shown, relaxed=True, generator=generator, return_loss=False).reconstruction))
        labels = ["input", "hard (argmax tokens)", f"soft (tau={model.current_temperature():.3g})"]
        if history:
            figures.append(line_chart(
                {"hard MSE": [(h["step"], h["mse"]) for h in history], "soft MSE": [(h["step"], h["soft_mse"]) for h in history],
                 "temperature tau / 10": [(h["step"], h["temperature"] / 10) for h in history]},
                out / "soft_vs_hard.png", f"{title}: held-out reconstruction MSE", "training step", "MSE",
            ))
    else:
        generator = torch.Generator().manual_seed(0)
        temperatures = (1.0, 0.8, 0.5)
        figures.append(image_grid(
            [processor.postprocess(model.sample(12, temperature=t, generator=generator)) for t in temperatures],
            out / "samples.png", [f"t = {t}" for t in temperatures], title=f"{title}: samples z ~ N(0, t^2 I) decoded",
        ))
        pairs = [(2 * i, 2 * i + 1) for i in range(4)]
        figures.append(image_grid(
            [processor.postprocess(model.interpolate(pixel_values[a], pixel_values[b], steps=10)) for a, b in pairs],
            out / "interpolations.png", title=f"{title}: interpolation between posterior means",
        ))
        if history:
            figures.append(line_chart(
                {"held-out MSE": [(h["step"], h["mse"]) for h in history]},
                out / "training_curve.png", f"{title}: held-out reconstruction MSE", "training step", "MSE",
            ))
    figures.insert(0, image_grid(rows, out / "reconstructions.png", labels, title=f"{title}: held-out images"))
    return figures


def run_autoencoder(
    model_args: AutoencoderModelArguments, data_args: AutoencoderDataArguments, training_args: AutoencoderTrainingArguments
) -> dict:
    """Train an ImageVAEModel or DiscreteVAEModel with Trainer, measure it and the mean-image baseline on held-out
    images, and save the model and processor (`from_pretrained`-loadable), `results.json` and PNG figures."""
    refuse_fsdp_on_cpu(training_args)
    set_seed(training_args.seed)
    data = load_image_dataset(
        data_args.dataset_name, data_args.image_size, data_args.num_train_images, data_args.num_eval_images,
        data_args.data_seed_builtin, data_args.image_column,
    )
    model, processor = load_autoencoder(model_args, data_args, training_args.max_steps)
    validation = processor(images=data["validation"]["image"])["pixel_values"]
    tracker = ReconstructionTracker(processor, validation[:256], training_args.track_every)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=AutoencoderCollator(processor),
        callbacks=[ScheduleStepCallback(), tracker],
    )
    logger.info("%s with %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    train_result = trainer.train(resume_from_checkpoint=resolve_checkpoint(training_args))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model.cpu()
    metrics = evaluate_autoencoder(model, processor, validation, mean_training_image(data["train"], processor))
    results = {
        "model_type": model.config.model_type,
        "dataset": data_args.dataset_name,
        "image_size": data_args.image_size,
        "validation_images": len(validation),
        "num_parameters": model.num_parameters(),
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "validation": metrics,
        "history": tracker.history,
    }
    if trainer.is_world_process_zero():
        out = Path(training_args.output_dir)
        trainer.save_model(str(out))
        processor.save_pretrained(str(out))
        (out / "results.json").write_text(json.dumps(results, indent=2))
        title = f"{'dVAE' if isinstance(model, DiscreteVAEModel) else 'VAE'} on {data_args.dataset_name}"
        figures = save_figures(model, processor, validation, tracker.history, out, title)
        logger.info("Saved model, processor, results.json and %s to %s", ", ".join(f.name for f in figures), out)
    return results


def results_table(results: dict) -> str:
    """Markdown table of held-out metrics against the mean-image baseline."""
    m = results["validation"]
    name = "dVAE (argmax tokens)" if results["model_type"] == "dvae" else "VAE (posterior mean)"
    lines = [
        "| held-out images | MSE | PSNR (dB) |",
        "|---|---|---|",
        f"| {name} | {m['mse']:.4f} | {m['psnr']:.1f} |",
        f"| baseline: mean training image | {m['mean_image_mse']:.4f} | {m['mean_image_psnr']:.1f} |",
    ]
    if results["model_type"] == "dvae":
        lines.append(f"\nCodebook: perplexity {m['perplexity']:.1f}, {m['codes_used']} codes used; soft (τ = "
                     f"{m['temperature']:.3g}) vs hard MSE {m['soft_mse']:.4f} vs {m['mse']:.4f}.")
    else:
        lines.append(f"\nNegative ELBO: {m['bits_per_dim']:.2f} bits/dim.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command line of `examples/run_autoencoder.py` and `hf-mmdl autoencoder`: every TrainingArguments flag plus the
    model and data flags above."""
    parser = HfArgumentParser((AutoencoderModelArguments, AutoencoderDataArguments, AutoencoderTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    results = run_autoencoder(model_args, data_args, training_args)
    print(results_table(results))
    print(f"Saved to {training_args.output_dir}")
    return results


__all__ = [
    "AutoencoderCollator",
    "AutoencoderDataArguments",
    "AutoencoderModelArguments",
    "AutoencoderTrainingArguments",
    "ReconstructionTracker",
    "autoencoder_config",
    "codebook_usage",
    "evaluate_autoencoder",
    "results_table",
    "run_autoencoder",
]
