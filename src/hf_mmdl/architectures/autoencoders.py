"""The image autoencoders: the continuous VAE (Kingma & Welling, ICLR 2014) and DALL-E's discrete VAE (Ramesh et
al., ICML 2021)."""


from transformers import AutoModelForImageToImage

from ..modeling import DiscreteVAEConfig, DiscreteVAEModel, ImageVAEConfig, ImageVAEModel
from ..modeling.modeling_dvae import DVAE_LORA_TARGET_MODULES
from ..modeling.modeling_vae import VAE_LORA_TARGET_MODULES
from ..processing import DiscreteVAEImageProcessor, ImageVAEImageProcessor
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart, dataset_description


def autoencoder_results_table(results: dict) -> str:
    """Markdown: held-out metrics against the mean-image baseline."""
    m = results["validation"]
    name = "dVAE (argmax tokens)" if results["model_type"] == "dvae" else "VAE (posterior mean)"
    lines = [
        "| held-out images | MSE | PSNR (dB) |",
        "|---|---|---|",
        f"| {name} | {m['mse']:.4f} | {m['psnr']:.1f} |",
        f"| baseline: mean training image | {m['mean_image_mse']:.4f} | {m['mean_image_psnr']:.1f} |",
    ]
    if results["model_type"] == "dvae":
        vocabulary = f" of {results['vocab_size']}" if "vocab_size" in results else ""
        lines.append(f"\nCodebook: perplexity {m['perplexity']:.1f} (at most the vocabulary, {m['codes_used']} codes "
                     f"used{vocabulary}); soft (τ = {m['temperature']:.3g}) vs hard MSE {m['soft_mse']:.4f} vs "
                     f"{m['mse']:.4f}.")
    else:
        # A density over 8-bit pixels that knows nothing spends 8 bits per dimension (uniform over 256 values).
        lines.append(f"\nNegative ELBO: {m['bits_per_dim']:.2f} bits/dim (an upper bound on the model's code length; "
                     "a uniform model of 8-bit pixels needs 8.00, and lower is better).")
    return "\n".join(lines)


def autoencoder_metrics_section(results: dict) -> str:
    return (
        f"{results.get('validation_images')} held-out images of {dataset_description(results)} at "
        f"{results.get('image_size')}×{results.get('image_size')} pixels, measured in the same run as the baseline.\n\n"
        f"{autoencoder_results_table(results)}"
    )


USAGE = (
    "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
    "from transformers import AutoModel, AutoProcessor\n\n"
    'model = AutoModel.from_pretrained("{repo_id}")\n'
    'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
    "pixel_values = processor(images=[image])[\"pixel_values\"]\n"
)

IMAGE_VAE_CARD = CardText(
    title="variational autoencoder for images",
    description=(
        "A variational autoencoder (Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014) with β "
        "weighting (Higgins et al., 2017) and KL warm-up: a convolutional encoder gives q(z|x) = N(μ, diag σ²), a "
        "decoder gives p(x|z) (Gaussian with a learned scale, or Bernoulli), trained on the ELBO with the "
        "reparameterisation trick. The encoder and decoder are diffusers' VAE blocks under `AutoencoderKL`'s "
        "names, so `AutoencoderKL` checkpoints convert 1:1. Implemented in the hf_mmdl package as a transformers "
        "`PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{kingma2014autoencoding,\n  title={Auto-Encoding Variational Bayes},\n"
        "  author={Kingma, Diederik P. and Welling, Max},\n  booktitle={International Conference on Learning "
        "Representations (ICLR)},\n  year={2014}\n}"
    ),
    pipeline_tag="image-to-image",
    tags=("vae", "autoencoder", "image_vae", "hf_mmdl"),
    usage=USAGE + (
        "reconstructions = processor.postprocess(model.reconstruct(pixel_values))  # PIL images\n"
        "samples = processor.postprocess(model.sample(8, temperature=0.8))\n"
        "path = processor.postprocess(model.interpolate(pixel_values[0], pixel_values[1], steps=8))\n```"
    ),
    limits=(
        "Reconstructions and samples are blurry, as for any Gaussian-likelihood VAE; the model only knows the "
        "image distribution it was trained on, at its training resolution. bits/dim are an upper bound (negative "
        "ELBO) on dequantised 8-bit pixels, not an exact likelihood."
    ),
    intended_use="Research on latent-variable models, representation learning and latent interpolation.",
    evaluation=autoencoder_metrics_section,
)

DVAE_CARD = CardText(
    title="DALL-E discrete VAE (image tokenizer)",
    description=(
        "The discrete VAE of DALL-E's first stage (Ramesh et al., *Zero-Shot Text-to-Image Generation*, ICML "
        "2021): an encoder maps an image to a grid of logits over K codes, a decoder maps a (relaxed) one-hot "
        "grid back to a logit-Laplace distribution over pixels. Trained with a gumbel-softmax relaxation whose "
        "temperature falls 1 → 1/16, a KL to the uniform prior weighted by β, on cosine schedules. The released "
        "architecture, sizes configurable. Implemented in the hf_mmdl package as a transformers `PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{ramesh2021zero,\n  title={Zero-Shot Text-to-Image Generation},\n  author={Ramesh, Aditya "
        "and Pavlov, Mikhail and Goh, Gabriel and Gray, Scott and Voss, Chelsea and Radford, Alec and Chen, Mark "
        "and Sutskever, Ilya},\n  booktitle={International Conference on Machine Learning (ICML)},\n  year={2021}\n}"
    ),
    pipeline_tag="image-to-image",
    tags=("dvae", "dall-e", "image-tokenizer", "hf_mmdl"),
    usage=USAGE + (
        "tokens = model.get_codebook_indices(pixel_values)  # (batch, h, w) ids in [0, vocab_size)\n"
        "images = processor.postprocess(model.decode_code(tokens))\n```"
    ),
    limits=(
        "Tokens lose detail (the paper's own reconstructions do); a model trained on the package's small built-in "
        "images tokenises only that kind of image. The stage-2 transformer prior of DALL-E is not part of it."
    ),
    intended_use="Research on discrete image representations and as an image tokenizer for generative models.",
    evaluation=autoencoder_metrics_section,
)

FULL_RUN = dict(max_steps=1200, logging_steps=100, track_every=120, seed=1234)
QUICK_RUN = dict(max_steps=300, logging_steps=50, track_every=100, seed=1234)

IMAGE_VAE = Architecture(
    name="vae",
    title="VAE",
    auto=(AutoEntry(ImageVAEConfig, ImageVAEModel, {AutoModelForImageToImage: ImageVAEModel}, ImageVAEImageProcessor,
                    lora_target_modules=VAE_LORA_TARGET_MODULES),),
    card=IMAGE_VAE_CARD,
    recipe="hf_mmdl.training.autoencoder:IMAGE_VAE_RECIPE",
    command_aliases={"autoencoder": "hf_mmdl.training.autoencoder:main"},
    quickstart=Quickstart(
        minutes=2,
        settings=dict(QUICK_RUN, model_type="vae", dataset_name="mnist"),
        full_settings=dict(FULL_RUN, model_type="vae", dataset_name="mnist"),
        figures=("reconstructions.png", "samples.png", "interpolations.png"),
        summary="continuous VAE on real MNIST digits: held-out MSE/PSNR against the mean training image, bits/dim, "
                "samples and interpolations",
    ),
    demo="hf_mmdl.demos.autoencoders:build_demo",
)

DVAE = Architecture(
    name="dvae",
    title="DALL-E dVAE",
    auto=(AutoEntry(DiscreteVAEConfig, DiscreteVAEModel, {AutoModelForImageToImage: DiscreteVAEModel},
                    DiscreteVAEImageProcessor, lora_target_modules=DVAE_LORA_TARGET_MODULES),),
    card=DVAE_CARD,
    recipe="hf_mmdl.training.autoencoder:DVAE_RECIPE",
    command_aliases={"autoencoder": "hf_mmdl.training.autoencoder:main"},
    converters=(Converter(
        name="dvae",
        help="openai/DALL-E: the released encoder.pkl and decoder.pkl (read without unpickling code).",
        function="hf_mmdl.convert.dvae_original:convert_dvae_checkpoint",
        arguments=(
            (("encoder_path",), dict(metavar="encoder",
                                     help="encoder.pkl (or a state dict in the original names, .pt or .safetensors).")),
            (("decoder_path",), dict(metavar="decoder",
                                     help="decoder.pkl (or a state dict in the original names, .pt or .safetensors).")),
            (("output_dir",), {}),
            (("--image_size", "--image-size"), dict(type=int, default=256,
                                                    help="Image side the processor resizes to (256).")),
        ),
    ),),
    quickstart=Quickstart(
        minutes=2,
        settings=dict(QUICK_RUN, model_type="dvae", dataset_name="twemoji", max_steps=600),
        full_settings=dict(FULL_RUN, model_type="dvae", dataset_name="twemoji"),
        figures=("reconstructions.png", "soft_vs_hard.png"),
        summary="DALL-E dVAE on Twemoji images: held-out MSE/PSNR of the argmax-token reconstruction against the mean "
                "training image, codebook perplexity and use, and the soft-vs-hard gap as the temperature falls",
    ),
    demo="hf_mmdl.demos.autoencoders:build_demo",
)

__all__ = ["DVAE", "IMAGE_VAE", "autoencoder_results_table"]
