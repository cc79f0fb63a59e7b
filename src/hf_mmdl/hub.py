"""Sharing on the Hugging Face Hub: a generated model card and one-commit uploads of a saved folder.

A folder written by the package (model + processor, and `results.json` when it came from a training run) becomes a
Hub repository with a model card that says what the model is, cites the paper, names the training data, reports the
measured metrics next to their baselines, and shows how to load it.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoConfig


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
    ),
}

DATASET_DESCRIPTIONS = {
    "scenes": "the package's built-in procedurally generated scenes (1-4 coloured shapes per 64×64 image, five "
    "compositional captions each; `hf_mmdl.data.load_scene_captions`)",
    "twemoji": "Twemoji images with captions from their CLDR names (Twemoji graphics by Twitter Inc. and "
    "contributors, CC BY 4.0; `hf_mmdl.data.load_twemoji_captions`)",
}

METRIC_NAMES = {"bleu_1": "BLEU-1", "bleu_4": "BLEU-4", "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider_d": "CIDEr-D"}
RESULT_ROWS = (
    ("model", "this model"),
    ("cross_entropy_model", "its cross-entropy checkpoint (before SCST)"),
    ("constant_caption_baseline", "baseline: best constant caption"),
    ("nearest_neighbour_baseline", "baseline: nearest neighbour on raw pixels"),
)


def _metrics_section(results: dict | None) -> str:
    if not results:
        return "No evaluation results were saved with this model."
    columns = [m for m in METRIC_NAMES if m in results["model"]]
    lines = ["| captioner | " + " | ".join(METRIC_NAMES[m] for m in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label in RESULT_ROWS:
        if key in results:
            lines.append(f"| {label} | " + " | ".join(
                f"{100 * results[key][m]:.1f}" if m in results[key] else "–" for m in columns) + " |")
    dataset = DATASET_DESCRIPTIONS.get(results.get("dataset"), f"`{results.get('dataset')}`")
    return (
        f"Test split of {dataset}, {results.get('test_images')} images, beam search; scores ×100, measured in the "
        f"same run as the baselines ({results.get('stage', 'cross-entropy')} training).\n\n" + "\n".join(lines)
    )


def model_card(folder: str | Path, repo_id: str) -> ModelCard:
    """A model card for a folder saved by the package, filled from its config and `results.json`."""
    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    if config.model_type not in ARCHITECTURE_CARDS:
        raise ValueError(f"No model card template for model_type {config.model_type!r}; known: {sorted(ARCHITECTURE_CARDS)}.")
    arch = ARCHITECTURE_CARDS[config.model_type]
    results_file = folder / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=arch.pipeline_tag,
        tags=list(arch.tags),
        model_name=repo_id.split("/")[-1],
    )
    training_data = DATASET_DESCRIPTIONS.get(results.get("dataset"), results.get("dataset")) if results else "not recorded"
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

{_metrics_section(results)}

## Intended use and limits

Research on image captioning and multimodal architectures. {arch.limits}

## Citation

```bibtex
{arch.citation}
```
"""
    return ModelCard(content)


def push_folder_to_hub(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                       commit_message: str = "Upload with hf_mmdl") -> str:
    """Upload a saved model + processor folder with a generated README.md in one commit; returns the commit URL.
    Checkpoint sub-folders and optimizer states are left out."""
    folder = Path(folder)
    card = model_card(folder, repo_id)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging)
        for path in folder.iterdir():
            if path.is_file() and path.name != "README.md" and not path.name.startswith(("optimizer", "scheduler", "rng_state")):
                (staged / path.name).write_bytes(path.read_bytes())
        card.save(staged / "README.md")
        commit = api.upload_folder(repo_id=repo_id, folder_path=staged, commit_message=commit_message)
    return str(commit)
