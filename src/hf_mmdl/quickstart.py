"""`hf-mmdl quickstart`: train, evaluate and show each architecture on built-in data.

Each architecture adds one function to `QUICKSTARTS`; it trains a small model on built-in data, compares it with a
baseline measured in the same run, saves a `from_pretrained`-loadable folder and PNG figures under `output_dir`, and
returns a short markdown summary.
"""

from collections.abc import Callable
from pathlib import Path


def m2_quickstart(output_dir: Path, max_steps: int | None = None, num_train_images: int | None = None) -> str:
    """M² captioner on the built-in scenes: cross-entropy training, then test CIDEr-D against the best constant
    caption and nearest-neighbour retrieval on raw pixels."""
    from .training.captioning import (
        CaptioningDataArguments,
        CaptioningModelArguments,
        CaptioningTrainingArguments,
        results_table,
        run_captioning,
    )

    data_args = CaptioningDataArguments(num_train_images=num_train_images or 4000, num_eval_images=250)
    training_args = CaptioningTrainingArguments(
        output_dir=str(output_dir / "m2"),
        max_steps=max_steps or 1200,
        warmup_steps=min(500, max_steps or 500),
        eval_strategy="no",
        save_strategy="no",
        logging_steps=100,
        seed=1234,
    )
    results = run_captioning(CaptioningModelArguments(model_size="small"), data_args, training_args)
    return (
        f"## M² meshed-memory captioner ({results['num_parameters'] / 1e6:.2f}M parameters, "
        f"{results['train_runtime_s']:.0f} s of training)\n\n{results_table(results)}\n\n"
        f"Model and processor: {output_dir / 'm2'} (AutoModelForImageTextToText / AutoProcessor); "
        f"figure: {output_dir / 'm2' / 'test_captions.png'}\n"
    )


def _autoencoder_quickstart(model_type: str, dataset_name: str, output_dir: Path, max_steps: int, num_train_images: int | None) -> str:
    from .training.autoencoder import (
        AutoencoderDataArguments,
        AutoencoderModelArguments,
        AutoencoderTrainingArguments,
        results_table,
        run_autoencoder,
    )

    folder = output_dir / model_type
    training_args = AutoencoderTrainingArguments(
        output_dir=str(folder), max_steps=max_steps, logging_steps=100, track_every=max(1, max_steps // 10), seed=1234
    )
    results = run_autoencoder(
        AutoencoderModelArguments(model_type=model_type, model_size="small"),
        AutoencoderDataArguments(dataset_name=dataset_name, num_train_images=num_train_images),
        training_args,
    )
    figures = ["reconstructions.png"] + (["soft_vs_hard.png"] if model_type == "dvae" else ["samples.png", "interpolations.png"])
    name = "DALL-E dVAE" if model_type == "dvae" else "VAE"
    return (
        f"## {name} on {dataset_name} ({results['num_parameters'] / 1e6:.2f}M parameters, "
        f"{results['train_runtime_s']:.0f} s of training)\n\n{results_table(results)}\n\n"
        f"Model and processor: {folder} (AutoModel / AutoProcessor); figures: "
        + ", ".join(str(folder / f) for f in figures) + "\n"
    )


def vae_quickstart(output_dir: Path, max_steps: int | None = None, num_train_images: int | None = None) -> str:
    """Continuous VAE on real MNIST digits: held-out MSE/PSNR against the mean training image, bits/dim, samples and
    interpolations."""
    return _autoencoder_quickstart("vae", "mnist", output_dir, max_steps or 1200, num_train_images)


def dvae_quickstart(output_dir: Path, max_steps: int | None = None, num_train_images: int | None = None) -> str:
    """DALL-E dVAE on Twemoji images: held-out MSE/PSNR of the argmax-token reconstruction against the mean
    training image, codebook perplexity and use, and the soft-vs-hard gap as the temperature falls."""
    return _autoencoder_quickstart("dvae", "twemoji", output_dir, max_steps or 1200, num_train_images)


def glide_quickstart(output_dir: Path, max_steps: int | None = None, num_train_images: int | None = None) -> str:
    """Small GLIDE on the built-in one-object scenes: analyser accuracy of samples at guidance 0, 1 and 3 against
    chance, then an inpainting fine-tune scored on recolouring edits (prompted colour, pixels outside the mask)."""
    from .training.text_to_image import TextToImageArguments, TextToImageTrainingArguments, results_table, run_text_to_image

    folder = output_dir / "glide"
    args = TextToImageArguments() if num_train_images is None else TextToImageArguments(num_train_images=num_train_images)
    training_args = TextToImageTrainingArguments(output_dir=str(folder), logging_steps=100, seed=0,
                                                 **({"max_steps": max_steps} if max_steps else {}))
    results = run_text_to_image(args, training_args)
    return (
        f"## GLIDE on the built-in scenes ({results['num_parameters'] / 1e6:.2f}M parameters, "
        f"{results['train_runtime_s']:.0f} s of training)\n\n{results_table(results)}\n\n"
        f"Pipelines: {folder} (GlidePipeline), {folder / 'inpaint'} (GlideInpaintPipeline); figures: "
        f"{folder / 'samples_by_guidance.png'}, {folder / 'edits.png'}\n"
    )


QUICKSTARTS: dict[str, Callable[..., str]] = {
    "m2": m2_quickstart, "vae": vae_quickstart, "dvae": dvae_quickstart, "glide": glide_quickstart,
}
