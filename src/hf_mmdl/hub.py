"""Sharing on the Hugging Face Hub: a generated model card and one-commit uploads of a saved folder.

A folder written by the package (model + processor, or a diffusers pipeline folder with `model_index.json`, and
`results.json` when it came from a training run) becomes a Hub repository with a model card that says what the
model is, cites the paper, names the training data, reports the measured metrics next to their baselines, and shows
how to load it.
"""

import json
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoConfig, PretrainedConfig

from . import __version__
from .architectures import architecture_of
from .architectures.base import dataset_description, resolve

# hf_mmdl is on no package index, so installing it by name would fail (or fetch someone else's package): the card
# says how to install it from its source, as it really is distributed.
INSTALL = (
    "`hf_mmdl` is not published on a package index; install it from its source. Install the torch build of your "
    "choice first, then, in a clone of the hf_mmdl repository, `pip install .` (`pip install \".[demo]\"` with "
    "the Gradio demo); or build a wheel there with `pip wheel . --no-deps -w dist` and install it where the model is "
    f"used: `pip install dist/hf_mmdl-{__version__}-py3-none-any.whl`."
)


def folder_config(folder: Path) -> tuple[PretrainedConfig, bool]:
    """The model config of a saved folder and whether the folder is a diffusers pipeline (`model_index.json`)."""
    folder = Path(folder)
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
    arch = architecture_of(config.model_type).card_for(config)
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
    training_data = dataset_description(results) if results else "not recorded"
    folder_section = f"{resolve(arch.folder_section)(folder)}\n\n" if arch.folder_section else ""
    content = f"""---
{data.to_yaml()}
---

# {repo_id.split("/")[-1]}: {arch.title}

{arch.description}

## How to load

{INSTALL}

Then:

{arch.usage.format(repo_id=repo_id)}

{folder_section}## Training data

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
