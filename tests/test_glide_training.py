"""GLIDE training on the built-in scenes: the analyser that scores samples, and the training script end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_mmdl.data.scenes import BACKGROUND, COLOURS
from hf_mmdl.data.text_to_image import POSITIONS, PROMPT_SHAPES, analyse_scene, load_text_to_image_scenes, render_prompt_scene
from hf_mmdl.pipelines import GlideInpaintPipeline, GlidePipeline
from hf_mmdl.training.text_to_image import TextToImageArguments, TextToImageTrainingArguments, edit_cases, run_text_to_image

from interruption import kill_once_written


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
    # Each scale is scored over the same 3 prompts, one sample each: a share of whole prompts, measured per scale.
    for scores in results["guidance"].values():
        assert {round(3 * scores[m], 6) for m in ("colour_accuracy", "position_accuracy")} <= {0.0, 1.0, 2.0, 3.0}
    assert len(results["prompts"]) == 3
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["chance"]["position_accuracy"] == 0.25
    assert all(s["max_change_outside_mask"] == 0 for s in saved["inpainting"]["guidance"].values())
    assert (tmp_path / "samples_by_guidance.png").stat().st_size > 500 and (tmp_path / "edits.png").stat().st_size > 500
    loaded = GlidePipeline.from_pretrained(tmp_path)
    assert loaded("a red circle in the top left", num_inference_steps=2).images[0].size == (16, 16)
    assert loaded.glide.config.prediction_type == loaded.scheduler.config.prediction_type == "v_prediction"
    inpaint = GlideInpaintPipeline.from_pretrained(tmp_path / "inpaint")
    assert inpaint.glide.config.inpaint


def test_edit_masks_cover_the_object_and_nothing_else_of_it():
    for case in edit_cases(12):
        source, mask = np.asarray(case.source(32)), np.asarray(case.mask(32)) > 0
        object_pixels = np.abs(source.astype(int) - BACKGROUND).sum(-1) > 0
        assert object_pixels.any() and not (object_pixels & ~mask).any()
        assert mask.mean() == 0.25 and case.new_colour != case.colour


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_text_to_image.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]


def script(output_dir: Path, *extra: str) -> list[str]:
    return [
        str(SCRIPT), "--model_size", "tiny", "--image_size", "16", "--num_train_images", "96", "--num_eval_prompts", "2",
        "--sampling_steps", "2", "--inpaint_steps", "0", "--output_dir", str(output_dir), "--logging_steps", "1",
        "--seed", "5", "--use_cpu", "--disable_tqdm", "true", "--warmup_steps", "0", *extra,
    ]


def test_killed_training_resumes_to_the_same_weights_and_average(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    steps = ["--max_steps", "24", "--save_strategy", "steps", "--save_steps", "8", "--save_total_limit", "5",
             "--per_device_train_batch_size", "8"]
    subprocess.run([sys.executable, *script(uninterrupted, *steps)], check=True, capture_output=True)
    kill_once_written([sys.executable, *script(interrupted, *steps)], interrupted / "checkpoint-16" / "ema.pt")
    resume = subprocess.run([sys.executable, *script(interrupted, *steps, "--resume_from_checkpoint", "last")],
                            capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr[-3000:]
    resumed, full = json.loads((interrupted / "results.json").read_text()), json.loads((uninterrupted / "results.json").read_text())
    # Timesteps, noise and caption dropout come from the RNG states saved in the checkpoint.
    assert resumed["train_loss_last"] == pytest.approx(full["train_loss_last"], rel=1e-5)
    # The saved model is the weight average, so this also checks the average was restored.
    resumed_weights = load_file(interrupted / "glide" / "model.safetensors")
    full_weights = load_file(uninterrupted / "glide" / "model.safetensors")
    assert all((resumed_weights[k] - full_weights[k]).abs().max() < 1e-6 for k in full_weights)
    assert resumed["guidance"] == full["guidance"]


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    common = ["--max_steps", "4", "--save_strategy", "no"]
    subprocess.run([sys.executable, *script(tmp_path / "bf16", *common, "--bf16", "--per_device_train_batch_size", "8")],
                   check=True, capture_output=True, env=env)
    bf16 = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert torch.isfinite(torch.tensor([bf16["train_loss_first"], bf16["train_loss_last"]])).all()
    # The same run in float32: bf16 autocast must have run (another loss) and stay close (measured: the last of 4
    # losses 3e-5 (GLIDE) and 8e-5 (dVAE) apart, relative; bf16 keeps 8 mantissa bits, eps 3.9e-3).
    subprocess.run([sys.executable, *script(tmp_path / "fp32", *common, "--per_device_train_batch_size", "8")],
                   check=True, capture_output=True, env=env)
    fp32 = json.loads((tmp_path / "fp32" / "results.json").read_text())
    assert bf16["train_loss_last"] != fp32["train_loss_last"]
    assert abs(bf16["train_loss_last"] - fp32["train_loss_last"]) < 1e-2 * abs(fp32["train_loss_last"])

    run = subprocess.run(TORCHRUN + ["--master_port", "29543", *script(tmp_path / "two", *common, "--per_device_train_batch_size", "4")],
                         check=True, capture_output=True, env=env, text=True)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert torch.isfinite(torch.tensor([two["train_loss_first"], two["train_loss_last"]])).all()
    # 2 processes × 4 images: one epoch of 96 images is 12 optimizer steps, so 4 steps are a third of it.
    assert two["train_epochs"] == pytest.approx(4 / 12), run.stderr[-2000:]


def test_text_to_image_command_takes_the_training_script_flags(tmp_path):
    from hf_mmdl.cli import main

    main(["text-to-image", *script(tmp_path, "--max_steps", "2")[1:]])
    assert set(json.loads((tmp_path / "results.json").read_text())["guidance"]) == {"0.0", "1.0", "3.0"}


def test_model_cards_of_the_trained_pipelines_report_their_measured_numbers(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, ModelCard

    from hf_mmdl.hub import model_card, push_folder_to_hub

    subprocess.run([sys.executable, *script(tmp_path, "--max_steps", "2", "--inpaint_steps", "2", "--num_edits", "2")],
                   check=True, capture_output=True)
    results = json.loads((tmp_path / "results.json").read_text())
    card = model_card(tmp_path, "someone/glide-scenes")
    text = str(card)
    assert card.data.pipeline_tag == "text-to-image" and card.data.library_name == "diffusers" and "nichol2022glide" in text
    colour, position = results["guidance"]["3.0"]["colour_accuracy"], results["guidance"]["3.0"]["position_accuracy"]
    assert f"| 3.0 | {colour:.1%} | {position:.1%} |" in text and "| chance | 16.7% | 25.0% |" in text
    assert 'GlidePipeline.from_pretrained("someone/glide-scenes")' in text and "built-in procedurally generated scenes" in text
    inpainting = model_card(tmp_path / "inpaint", "someone/glide-inpaint")
    assert inpainting.data.pipeline_tag == "image-to-image" and "GlideInpaintPipeline" in str(inpainting)
    assert "largest change outside the mask" in str(inpainting)

    uploaded = {}

    def fake_upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
        uploaded["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        uploaded["card"] = ModelCard.load(Path(folder_path) / "README.md")
        return "https://huggingface.co/someone/glide-scenes/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, private=False, exist_ok=False, **kwargs: None)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    push_folder_to_hub(tmp_path, "someone/glide-scenes")
    assert {"README.md", "model_index.json", "glide/config.json", "glide/model.safetensors", "scheduler/scheduler_config.json",
            "processor/processor_config.json", "processor/tokenizer.json", "results.json",
            "samples_by_guidance.png"} <= set(uploaded["files"])
    assert not any(name.startswith(("inpaint/", "checkpoint-")) for name in uploaded["files"])


def test_twemoji_names_train_and_are_scored_by_nearest_neighbour_retrieval(tmp_path):
    results = run_text_to_image(
        TextToImageArguments(dataset_name="twemoji", model_size="tiny", image_size=16, num_train_images=40,
                             num_eval_prompts=4, sampling_steps="2"),
        TextToImageTrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                     logging_steps=1, disable_tqdm=True, warmup_steps=0),
    )
    assert results["chance"] == {"retrieval_top1": 1 / 40, "retrieval_top10": 10 / 40}
    assert all(set(s) == {"retrieval_top1", "retrieval_top10"} for s in results["guidance"].values())
    assert "inpainting" not in results and not (tmp_path / "inpaint").exists()
    assert len(results["prompts"]) == 4 and all(p == p.lower() for p in results["prompts"])


def test_retrieval_scoring_finds_the_prompted_reference_and_misses_others():
    from hf_mmdl.training.text_to_image import score_retrieval

    references = [render_prompt_scene("circle", colour, "top left", 16) for colour in COLOURS]
    names = list(COLOURS)

    class Echo:  # a "pipeline" that draws exactly the reference it is asked for, or always the first
        def __init__(self, exact):
            self.exact = exact

        def __call__(self, prompts, **kwargs):
            return type("Out", (), {"images": [references[names.index(p) if self.exact else 0] for p in prompts]})()

    exact, _ = score_retrieval(Echo(True), names, references, names, [3.0], "2")
    constant, _ = score_retrieval(Echo(False), names, references, names, [3.0], "2")
    assert exact["3.0"]["retrieval_top1"] == 1.0
    assert constant["3.0"]["retrieval_top1"] == pytest.approx(1 / 6)


def test_bad_training_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="dataset_name must be 'scenes' or 'twemoji'"):
        run_text_to_image(TextToImageArguments(dataset_name="coco"), TextToImageTrainingArguments(output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="model_size must be one of"):
        run_text_to_image(TextToImageArguments(model_size="huge", num_train_images=4),
                          TextToImageTrainingArguments(output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        run_text_to_image(TextToImageArguments(model_size="tiny", prediction_type="x0", num_train_images=4),
                          TextToImageTrainingArguments(output_dir=str(tmp_path)))
    (tmp_path / "checkpoint-4").mkdir()  # a finished checkpoint (trainer_state.json) without the weight average
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="ema.pt is missing"):
        run_text_to_image(TextToImageArguments(model_size="tiny", image_size=16, num_train_images=4),
                          TextToImageTrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="last"))


def test_the_weight_average_follows_its_warm_up_decay_and_ends_in_the_model():
    from hf_mmdl.training import EMACallback

    model = torch.nn.Linear(2, 1, bias=False)
    callback = EMACallback(model, decay=0.999, power=1.0)
    for value in (1.0, 2.0):
        model.weight.data.fill_(value)
        callback.on_step_end(None, None, None, model=model)
    # decay at update k is 1 − k^−power: the first update copies, the second averages half and half.
    callback.on_train_end(None, None, None, model=model)
    assert model.weight.detach().tolist() == [[1.5, 1.5]]


def test_the_inpainting_stage_resumes_from_its_own_newest_checkpoint(tmp_path):
    from hf_mmdl.training.text_to_image import resume_point

    stage = tmp_path / "inpaint"
    resuming = TextToImageTrainingArguments(output_dir=str(stage), resume_from_checkpoint="last")
    assert resume_point(resuming) is None  # the stage has not started yet: it starts afresh
    for step in (200, 400):  # finished checkpoints: Trainer writes trainer_state.json last
        (stage / f"checkpoint-{step}").mkdir(parents=True)
        (stage / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resume_point(resuming) == str(stage / "checkpoint-400")
    assert resume_point(TextToImageTrainingArguments(output_dir=str(stage))) is None


def test_the_deep_small_size_attends_at_8_and_4_pixels_on_32_pixel_images():
    from hf_mmdl.training.text_to_image import glide_config_for

    shallow, deep = (glide_config_for(size, vocab_size=20, pad_token_id=1, image_size=32) for size in ("small", "small-deep"))
    assert shallow.channel_mult == (1, 2, 2) and shallow.attention_resolutions == (8,)
    assert deep.channel_mult == (1, 2, 2, 2) and deep.attention_resolutions == (8, 4)


@pytest.mark.parametrize("disable_tqdm", ["false", "true"])
def test_the_command_shows_evaluation_progress_and_says_where_it_saved(tmp_path, capsys, disable_tqdm):
    from hf_mmdl.training.text_to_image import main

    main(["--model_size", "tiny", "--image_size", "16", "--num_train_images", "8", "--num_eval_prompts", "2",
          "--sampling_steps", "2", "--inpaint_steps", "1", "--num_edits", "2", "--max_steps", "1",
          "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path), "--use_cpu", "--warmup_steps", "0",
          "--report_to", "none", "--disable_tqdm", disable_tqdm])
    out, err = capsys.readouterr()
    assert f"Saved to {tmp_path}" in out.splitlines()
    shown = disable_tqdm == "false"  # sampling and edits for every guidance scale take minutes on a CPU
    assert ("GLIDE evaluation samples" in err) is shown and ("GLIDE evaluation edits" in err) is shown
