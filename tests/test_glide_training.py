"""GLIDE training on the built-in scenes: the analyser that scores samples, and the training script end to end."""

import json

import numpy as np

from hf_mmdl.data.scenes import BACKGROUND, COLOURS
from hf_mmdl.data.text_to_image import POSITIONS, PROMPT_SHAPES, analyse_scene, load_text_to_image_scenes, render_prompt_scene
from hf_mmdl.pipelines import GlideInpaintPipeline, GlidePipeline
from hf_mmdl.training.text_to_image import TextToImageArguments, TextToImageTrainingArguments, edit_cases, run_text_to_image


def test_the_analyser_reads_colour_and_position_of_every_rendered_scene():
    for shape in PROMPT_SHAPES:
        for colour in COLOURS:
            for position in POSITIONS:
                assert analyse_scene(render_prompt_scene(shape, colour, position)) == {"colour": colour, "position": position}


def test_the_data_captions_name_what_is_drawn():
    row = load_text_to_image_scenes(num_train=3, num_validation=1)["train"][0]
    assert row["caption"] == f"a {row['colour']} {row['shape']} in the {row['position']}"
    assert analyse_scene(row["image"]) == {"colour": row["colour"], "position": row["position"]}


def test_training_script_trains_scores_guidance_scales_and_edits_and_saves_both_pipelines(tmp_path):
    results = run_text_to_image(
        TextToImageArguments(model_size="tiny", image_size=16, num_train_images=24, num_eval_prompts=3, sampling_steps="2",
                             inpaint_steps=2, num_edits=3),
        TextToImageTrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                     logging_steps=1, disable_tqdm=True, warmup_steps=0),
    )
    assert set(results["guidance"]) == {"0.0", "1.0", "3.0"}
    assert all(0 <= s["colour_accuracy"] <= 1 for s in results["guidance"].values())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["chance"]["position_accuracy"] == 0.25
    assert all(s["max_change_outside_mask"] == 0 for s in saved["inpainting"]["guidance"].values())
    assert (tmp_path / "samples_by_guidance.png").stat().st_size > 500 and (tmp_path / "edits.png").stat().st_size > 500
    assert GlidePipeline.from_pretrained(tmp_path)("a red circle in the top left", num_inference_steps=2).images[0].size == (16, 16)
    inpaint = GlideInpaintPipeline.from_pretrained(tmp_path / "inpaint")
    assert inpaint.glide.config.inpaint


def test_edit_masks_cover_the_object_and_nothing_else_of_it():
    for case in edit_cases(12):
        source, mask = np.asarray(case.source(32)), np.asarray(case.mask(32)) > 0
        object_pixels = np.abs(source.astype(int) - BACKGROUND).sum(-1) > 0
        assert object_pixels.any() and not (object_pixels & ~mask).any()
        assert mask.mean() == 0.25 and case.new_colour != case.colour
