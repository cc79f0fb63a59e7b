"""The architecture registry: every declared architecture is registered, trainable, convertible, shareable and
quickstartable through the same loops, and a new declaration is all it takes to appear everywhere."""

import dataclasses
import json
import subprocess
import sys

import datasets
import numpy as np
import PIL.Image
import pytest
from transformers import AutoConfig, AutoModel, AutoProcessor, TrainingArguments
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

import hf_mmdl
from hf_mmdl.architectures import ARCHITECTURES, architecture_of, resolve
from hf_mmdl.cli import build_parser, main
from hf_mmdl.quickstart import quickstart_settings
from hf_mmdl.training.recipe import Recipe
from hf_mmdl.training.text_to_image import TextToImageArguments, TextToImageTrainingArguments, run_text_to_image

DECLARED = list(ARCHITECTURES.values())
# An architecture is declared (Auto classes, converters, cards) before its training recipe and quickstart exist.
WITH_RECIPE = [a for a in DECLARED if a.recipe]
WITH_QUICKSTART = [a for a in DECLARED if a.quickstart]


def test_the_registry_holds_the_architectures_in_quickstart_order():
    assert list(ARCHITECTURES) == ["m2", "vae", "dvae", "glide", "data2vec_multimodal", "multimodal_vae", "vokenizer", "voken_lm"]
    model_types = [t for a in DECLARED for t in a.model_types]
    assert len(model_types) == len(set(model_types)) == len(hf_mmdl.MODEL_TYPES)


@pytest.mark.parametrize("architecture", DECLARED, ids=lambda a: a.name)
def test_every_declared_class_is_registered_with_the_auto_classes_and_exported(architecture):
    for entry in architecture.auto:
        assert AutoConfig.for_model(entry.config.model_type).__class__ is entry.config
        assert getattr(hf_mmdl, entry.config.__name__) is entry.config
        if entry.model is not None:
            assert AutoModel._model_mapping[entry.config] is entry.model
        for auto_class, model in entry.task_models.items():
            assert auto_class._model_mapping[entry.config] is model
        if entry.image_processor is not None:
            assert IMAGE_PROCESSOR_MAPPING[entry.config]["pil"] is entry.image_processor
        if entry.processor is not None:
            assert PROCESSOR_MAPPING[entry.config] is entry.processor
            assert getattr(hf_mmdl, entry.processor.__name__) is entry.processor
    for pipeline in architecture.pipelines:
        assert getattr(hf_mmdl, pipeline.__name__) is pipeline


@pytest.mark.parametrize("architecture", DECLARED, ids=lambda a: a.name)
def test_every_declaration_points_at_real_recipes_converters_and_demos(architecture):
    if architecture.recipe is not None:
        recipe = architecture.load_recipe()
        assert isinstance(recipe, Recipe) and recipe.name == architecture.name
        assert issubclass(list(recipe.argument_classes.values())[-1], TrainingArguments)
    for converter in architecture.converters:
        assert callable(resolve(converter.function))
    if architecture.demo is not None:
        assert callable(resolve(architecture.demo))
    for alias in architecture.command_aliases.values():
        assert callable(resolve(alias))


@pytest.mark.parametrize("architecture", WITH_QUICKSTART, ids=lambda a: a.name)
@pytest.mark.parametrize("full", [False, True], ids=["default", "full"])
def test_quickstart_settings_are_flags_of_the_recipe(architecture, full, tmp_path):
    settings = quickstart_settings(architecture, tmp_path, full=full)
    arguments = architecture.load_recipe().parser().parse_dict(settings)  # unknown flags raise
    training = arguments[-1]
    assert training.output_dir == str(tmp_path / architecture.name)


def test_quickstart_overrides_cap_the_warm_up_at_the_step_count(tmp_path):
    settings = quickstart_settings(ARCHITECTURES["m2"], tmp_path, max_steps=4, num_train_images=40)
    assert settings["max_steps"] == 4 and settings["warmup_steps"] == 4 and settings["num_train_images"] == 40


def test_the_command_line_is_derived_from_the_declarations():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"quickstart", "train", "convert", "push", "demo", "captioning", "autoencoder", "text-to-image",
            "data2vec"} <= set(commands)
    assert set(commands["train"]._actions[-1].choices) == {a.name for a in WITH_RECIPE}
    converters = commands["convert"]._subparsers._group_actions[0].choices
    assert set(converters) == {c.name for a in DECLARED for c in a.converters} == {"m2", "dvae", "glide", "data2vec",
                                                                                   "vokenizer-matcher", "voken-lm"}


@pytest.mark.parametrize("name", [a.name for a in WITH_RECIPE])
def test_train_help_names_the_sub_command_and_the_recipe_flags(name):
    out = subprocess.run([sys.executable, "-m", "hf_mmdl.cli", "train", name, "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert f"usage: hf-mmdl train {name}" in out and "--learning_rate" in out and "--output_dir" in out


def test_flags_take_either_spelling(tmp_path):
    for spelling in ("--output_dir", "--output-dir"):
        args = build_parser().parse_args(["quickstart", spelling, str(tmp_path), "--max-steps", "2"])
        assert args.output_dir == str(tmp_path) and args.max_steps == 2


def test_an_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="'bert' is not an hf_mmdl architecture"):
        architecture_of("bert")


def test_the_sharing_layer_does_not_import_the_training_layer():
    code = "import sys, hf_mmdl.hub; print(sorted(m for m in sys.modules if m.startswith('hf_mmdl.training')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_recipe_refuses_arguments_of_another_recipe(tmp_path):
    recipe = ARCHITECTURES["glide"].load_recipe()
    with pytest.raises(TypeError, match="options arguments must be a TextToImageArguments"):
        recipe.run(TrainingArguments(output_dir=str(tmp_path)), TextToImageTrainingArguments(output_dir=str(tmp_path)))


def test_a_new_declaration_appears_in_every_command(monkeypatch):
    toy = dataclasses.replace(ARCHITECTURES["vae"], name="toy", command_aliases={}, converters=())
    monkeypatch.setitem(ARCHITECTURES, "toy", toy)
    commands = build_parser()._subparsers._group_actions[0].choices
    assert "toy" in commands["train"]._actions[-1].choices
    assert "toy" in commands["quickstart"]._option_string_actions["--architectures"].choices


@pytest.fixture
def captioned_folder(tmp_path):
    """A user's own image + caption data set, saved with `save_to_disk`, in two colours."""
    colours = {"a red square": (200, 30, 30), "a blue square": (30, 30, 200)}
    rows = [{"picture": PIL.Image.fromarray(np.full((20, 20, 3), rgb, dtype=np.uint8)), "text": caption}
            for caption, rgb in colours.items() for _ in range(4)]
    folder = tmp_path / "user-data"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return folder


def test_text_to_image_trains_on_a_users_captioned_images_scored_by_retrieval(captioned_folder, tmp_path):
    results = run_text_to_image(
        TextToImageArguments(dataset_name=str(captioned_folder), image_column="picture", captions_column="text",
                             model_size="tiny", image_size=16, num_eval_prompts=2, sampling_steps="2"),
        TextToImageTrainingArguments(output_dir=str(tmp_path / "glide"), max_steps=2, per_device_train_batch_size=4,
                                     disable_tqdm=True, warmup_steps=0),
    )
    assert results["chance"]["retrieval_top1"] == pytest.approx(1 / 8) and "inpainting" not in results
    assert json.loads((tmp_path / "glide" / "results.json").read_text())["dataset"] == str(captioned_folder)
    assert AutoProcessor.from_pretrained(tmp_path / "glide" / "processor").image_processor.crop_size["height"] == 16


def test_text_to_image_names_a_missing_captions_column(captioned_folder, tmp_path):
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['captions'\].*--captions_column"):
        run_text_to_image(TextToImageArguments(dataset_name=str(captioned_folder), image_column="picture",
                                               model_size="tiny", image_size=16),
                          TextToImageTrainingArguments(output_dir=str(tmp_path / "glide")))


def test_train_command_runs_a_recipe_and_demo_lookup_finds_its_demo(tmp_path):
    folder = tmp_path / "vae"
    main(["train", "vae", "--model_size", "tiny", "--dataset_name", "mnist", "--image_size", "16", "--num_train_images",
          "32", "--num_eval_images", "8", "--max_steps", "2", "--track_every", "1", "--output_dir", str(folder),
          "--disable_tqdm", "true"])
    assert AutoConfig.from_pretrained(folder).model_type == "image_vae"
    assert (folder / "reconstructions.png").exists() and json.loads((folder / "results.json").read_text())["history"]
    from hf_mmdl.demos import build_demo_for

    assert build_demo_for(str(folder)).title
