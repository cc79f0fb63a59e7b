"""The multimodal VAE: one Gaussian latent for images and captions, fused by a product of experts (MVAE, Wu & Goodman,
NeurIPS 2018) or a mixture of experts (MMVAE, Shi et al., NeurIPS 2019), with cross-modal latent arithmetic."""

from ..modeling import MultimodalVAEConfig, MultimodalVAEModel
from ..modeling.modeling_multimodal_vae import MULTIMODAL_VAE_LORA_TARGET_MODULES
from ..processing import MultimodalVAEImageProcessor, MultimodalVAEProcessor
from .base import Architecture, AutoEntry, CardText, Quickstart, dataset_description

SCORE_COLUMNS = ("colour", "shape", "position", "all")


def _row(name: str, scores: dict | None, bold: bool = False) -> str:
    if scores is None:
        return f"| {name} |" + " – |" * len(SCORE_COLUMNS)
    cells = [f"{scores[key]:.1%}" for key in SCORE_COLUMNS]
    if bold:
        cells[-1] = f"**{cells[-1]}**"
    return f"| {name} | " + " | ".join(cells) + " |"


def _user_results_table(results: dict) -> str:
    """Markdown of a user-dataset run: held-out ELBO terms, latent retrieval and caption-scored arithmetic."""
    elbo, retrieval, arithmetic = results["heldout_elbo_nats"], results["retrieval"], results["arithmetic"]
    lines = [results["note"], "",
             f"Held-out terms on {results['test_rows_scored']} test rows (of {results['test_rows']}; the others use words "
             "no training caption has, or clips longer than the model reads), nats per example, z drawn from the posterior (seed 0):", "",
             "| posterior | image −log p | caption −log p | audio −log p | KL | −ELBO of the image alone |",
             "|---|---|---|---|---|---|"]
    for name, label in (("multimodal_joint", "multimodal VAE, all modalities"),
                        ("multimodal_image_only", "multimodal VAE, image alone"), ("image_only_vae", "image-only VAE")):
        if name in elbo:
            terms = elbo[name]
            cells = [f"{terms[key]:.1f}" if key in terms else "–"
                     for key in ("image_nll", "text_nll", "audio_nll", "kl", "negative_elbo_image")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| retrieval in latent space (cosine of posterior means) | R@1 | R@5 |", "|---|---|---|"]
    for name, label in (("caption_to_image", "caption → image"), ("image_to_caption", "image → caption"),
                        ("speech_to_image", "speech → image"), ("chance", "chance")):
        if name in retrieval:
            lines.append(f"| {label} | {retrieval[name]['R@1']:.1%} | {retrieval[name]['R@5']:.1%} |")
    lines += ["", f"Arithmetic z(image) − v(word a) + v(word b) on {arithmetic['cases']} cases ({arithmetic['edits']}): the "
              f"caption generated from the result names b and not a in {arithmetic['caption_has_b_not_a']:.1%} of cases "
              f"(the caption of the unedited image latent: {arithmetic['unedited_caption_has_b_not_a']:.1%})."]
    return "\n".join(lines)


def multimodal_vae_results_table(results: dict) -> str:
    """Markdown: arithmetic and cross-modal generation scored by the scene analyser and the caption words, next to
    chance and the image-only VAE; for a user dataset, the measures that need no analyser."""
    if "heldout_elbo_nats" in results:
        return _user_results_table(results)
    arithmetic, chance = results["arithmetic"], results["chance"]
    header = "| colour | shape | position | all three |"
    lines = [
        f"Latent arithmetic z(image) − z(text colour a) + z(text colour b), {arithmetic['cases']} cases "
        f"({arithmetic['held_out_cases']} whose target combination was never trained on): share of decoded results "
        "with colour b and the source's shape and position.",
        "",
        "| result read by | " + header[2:],
        "|---|---|---|---|---|",
        _row("image (analyser): multimodal VAE", arithmetic["multimodal"]["image"], bold=True),
        _row("image (analyser): multimodal VAE, held-out targets", arithmetic["multimodal"]["image_held_out"]),
        _row("caption words: multimodal VAE", arithmetic["multimodal"]["caption"]),
        _row("image: same model, image-mean attribute vectors", arithmetic["multimodal"]["image_vectors"]),
        *([_row("image: same model, spoken-caption attribute vectors", arithmetic["multimodal"]["speech_vectors"])]
          if "speech_vectors" in arithmetic["multimodal"] else []),
        _row("image: image-only VAE (image-mean attribute vectors)", arithmetic["image_only"]["image"], bold=True),
        _row("image: image-only VAE, held-out targets", arithmetic["image_only"]["image_held_out"]),
        _row("chance", chance),
        "",
        f"Cross-modal generation on all {results['combinations']} combinations ({results['held_out_combinations']} "
        "never trained on):",
        "",
        "| generation | " + header[2:],
        "|---|---|---|---|---|",
        _row("caption → image (analyser)", results["text_to_image"]["all"], bold=True),
        _row("caption → image, held-out", results["text_to_image"]["held_out"]),
        _row("image → caption (words)", results["image_to_text"]["all"], bold=True),
        _row("image → caption, held-out", results["image_to_text"]["held_out"]),
        _row("image → image reconstruction (analyser)", results["reconstruction"]["all"]),
        *([_row("spoken caption → image (analyser)", results["speech_to_image"]["all"], bold=True),
           _row("spoken caption → image, held-out", results["speech_to_image"]["held_out"]),
           _row("spoken caption → caption (words)", results["speech_to_text"]["all"])] if "speech_to_image" in results else []),
        _row("chance", chance),
    ]
    return "\n".join(lines)


def multimodal_vae_metrics_section(results: dict) -> str:
    if "heldout_elbo_nats" in results:
        return (f"Trained on {results['train_rows']} rows of {dataset_description(results)} at {results['image_size']}×"
                f"{results['image_size']} pixels (modalities: {', '.join(results['modalities'])}); the image-only VAE "
                f"was trained in the same run.\n\n{multimodal_vae_results_table(results)}")
    return (f"Trained on {results['train_rows']} rows of {dataset_description(results)} at {results['image_size']}×"
            f"{results['image_size']} pixels, {results['held_out_combinations']} colour-shape-position combinations "
            "held out of training; the image-only VAE (same network, same images, seed and steps, no captions, as a plain "
            f"VAE) was trained in the same run.\n\n{multimodal_vae_results_table(results)}")


CARD = CardText(
    title="multimodal VAE: one latent for images and captions, with cross-modal arithmetic",
    description=(
        "A multimodal variational autoencoder: an image encoder (diffusers' VAE blocks) and a caption encoder (a small "
        "Transformer) each give a Gaussian expert q(z|x_m) over one shared latent, fused by a product of experts with "
        "a prior expert (MVAE: Wu & Goodman, *Multimodal Generative Models for Scalable Weakly-Supervised Learning*, "
        "NeurIPS 2018) or by a mixture of experts (MMVAE: Shi et al., *Variational Mixture-of-Experts Autoencoders "
        "for Multi-Modal Deep Generative Models*, NeurIPS 2019). An image decoder (diffusers' VAE blocks, Gaussian "
        "likelihood with a learned scale) and an autoregressive caption decoder (transformers' `GenerationMixin`, z as "
        "a prefix) generate either modality from z. Training sums the ELBO of the joint posterior and of each "
        "unimodal posterior (MVAE's sub-sampled training), so either modality may be missing. A model trained with "
        "`--audio true` also reads and writes spoken captions as log-mel frames (a convolutional encoder and decoder, "
        "one more expert and likelihood term; the ELBO then runs over every subset of the three). Latent arithmetic "
        "z(image) − z(text a) + z(text b) edits an image's attribute through words. Implemented in the hf_mmdl "
        "package as a transformers `PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{wu2018multimodal,\n  title={Multimodal Generative Models for Scalable Weakly-Supervised "
        "Learning},\n  author={Wu, Mike and Goodman, Noah},\n  booktitle={Advances in Neural Information Processing "
        "Systems (NeurIPS)},\n  year={2018}\n}\n@inproceedings{shi2019variational,\n  title={Variational "
        "Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative Models},\n  author={Shi, Yuge and "
        "Siddharth, N. and Paige, Brooks and Torr, Philip H. S.},\n  booktitle={Advances in Neural Information "
        "Processing Systems (NeurIPS)},\n  year={2019}\n}"
    ),
    pipeline_tag="image-to-image",
    tags=("vae", "multimodal", "mvae", "mmvae", "image", "text", "audio", "hf_mmdl"),
    usage=(
        "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
        "from transformers import AutoModel, AutoProcessor\n\n"
        'model = AutoModel.from_pretrained("{repo_id}").eval()\n'
        'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
        "# an attribute as a direction: the mean latent of captions that name it\n"
        "red = model.encode(**processor(text=captions_with_red)).latent_mean.mean(0, keepdim=True)\n"
        "blue = model.encode(**processor(text=captions_with_blue)).latent_mean.mean(0, keepdim=True)\n"
        "z = model.arithmetic(processor(images=[image]), red, blue)  # z(image) − z(red) + z(blue)\n"
        "edited = processor.postprocess(model.decode_image(z))  # PIL images\n"
        "caption = processor.batch_decode(model.generate_text(z))\n"
        "z_text = model.encode(**processor(text=[\"a green square in the top left\"])).latent_mean\n"
        "drawn = processor.postprocess(model.decode_image(z_text))\n```"
    ),
    limits=(
        "A small model trained on the package's built-in attribute scenes knows only their 6 colours, 3 shapes and 4 "
        "positions and the caption vocabulary (other words are refused by the processor). Decoded images are blurry, "
        "as for any Gaussian-likelihood VAE. Arithmetic with single-word texts works only as well as the caption "
        "encoder has learned to read partial captions; the measured arithmetic uses attribute vectors averaged over "
        "training captions (see the evaluation). Audio (spoken captions as log-mel frames) is a modality only of models trained with "
        "`--audio true`; its decoder writes log-mel frames, not waveforms."
    ),
    intended_use="Research on multimodal latent-variable models, missing-modality inference and cross-modal arithmetic.",
    evaluation=multimodal_vae_metrics_section,
)

QUICK_RUN = dict(max_steps=400, num_train_images=2000, seed=0, audio=True)
FULL_RUN = dict(max_steps=1500, num_train_images=4000, seed=0, audio=True)

MULTIMODAL_VAE = Architecture(
    name="multimodal_vae",
    title="multimodal VAE",
    auto=(AutoEntry(MultimodalVAEConfig, MultimodalVAEModel, {}, MultimodalVAEImageProcessor, MultimodalVAEProcessor,
                    lora_target_modules=MULTIMODAL_VAE_LORA_TARGET_MODULES),),
    card=CARD,
    recipe="hf_mmdl.training.multimodal_vae:MULTIMODAL_VAE_RECIPE",
    demo="hf_mmdl.demos.multimodal_vae:build_demo",
    quickstart=Quickstart(
        minutes=3,
        settings=QUICK_RUN,
        full_settings=FULL_RUN,
        figures=("arithmetic.png", "cross_modal.png"),
        summary="multimodal VAE (mixture of experts) on built-in attribute scenes, captions and spoken captions: "
                "latent arithmetic image − text colour + text colour scored by a scene analyser against chance and an "
                "image-only VAE, caption → image, image → caption and spoken caption → image",
    ),
)

__all__ = ["MULTIMODAL_VAE", "multimodal_vae_results_table"]
