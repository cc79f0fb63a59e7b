"""Training the multimodal VAE: the learning test (cross-modal arithmetic beats the image-only VAE trained in the same
test), the recipe's run end to end (results, figures, card, demo lookup) and an interrupted run resumed to the
uninterrupted result."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_mmdl import MultimodalVAEModel, MultimodalVAEProcessor
from hf_mmdl.data.attribute_scenes import chance_scores, load_attribute_scenes
from hf_mmdl.hub import model_card
from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for
from hf_mmdl.training.multimodal_vae import (
    MULTIMODAL_VAE_RECIPE, colour_vectors, image_only_config, parse_edits, pick_edit_words, posterior_means,
    score_arithmetic,
)

from interruption import kill_once_written

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_multimodal_vae.py"
TINY_RUN = ["--model_size", "tiny", "--image_size", "16", "--num_train_images", "64", "--per_device_train_batch_size", "8",
            "--logging_steps", "2", "--seed", "3", "--use_cpu", "--disable_tqdm", "true"]


def train(model, pixels, ids, mask, steps: int, with_text: bool, seed: int = 0, learning_rate: float = 2e-3) -> None:
    """AdamW on random batches of 32 of the given rows (the recipe's settings, without Trainer's overhead)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for step in range(steps):
        model.set_schedule_step(step)
        rows = torch.tensor(rng.choices(range(len(pixels)), k=32))
        text = {"input_ids": ids[rows], "attention_mask": mask[rows]} if with_text else {}
        loss = model(pixel_values=pixels[rows], **text).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.set_schedule_step(None)
    model.eval()


def test_the_multimodal_vae_beats_its_image_only_baseline_on_cross_modal_arithmetic():
    torch.set_num_threads(1)
    data = load_attribute_scenes(num_train=1, image_size=16, num_held_out=12)
    test = data["test"]
    trained = test.filter(lambda row: not row["held_out"])
    processor = MultimodalVAEProcessor.for_captions(list(trained["text"]), image_size=16)
    batch = processor(images=list(trained["image"]), text=list(trained["text"]))
    steps = 300
    config = multimodal_vae_config_for("tiny", **processor.config_kwargs(), fusion="moe", kl_warmup_steps=steps // 10)
    torch.manual_seed(0)
    multimodal = MultimodalVAEModel(config)
    train(multimodal, batch["pixel_values"], batch["input_ids"], batch["attention_mask"], steps, with_text=True)
    torch.manual_seed(0)
    image_only = MultimodalVAEModel(image_only_config(config))  # the recipe's baseline: a plain VAE on images
    train(image_only, batch["pixel_values"], None, None, steps, with_text=False)

    held = {(r["colour"], r["shape"], r["position"]) for r in test if r["held_out"]}
    with torch.no_grad():
        words = colour_vectors(posterior_means(multimodal, processor, texts=trained["text"]), list(trained["colour"]))
        ours = score_arithmetic(multimodal, processor, test, posterior_means(multimodal, processor, images=test["image"]),
                                words, held, with_captions=False)["image"]
        pictures = colour_vectors(posterior_means(image_only, processor, images=trained["image"]), list(trained["colour"]))
        theirs = score_arithmetic(image_only, processor, test,
                                  posterior_means(image_only, processor, images=test["image"]), pictures, held,
                                  with_captions=False)["image"]
    assert ours["all"] > 3 * chance_scores()["all"], ours
    assert ours["all"] > theirs["all"] + 0.05, (ours, theirs)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multimodal_vae")
    MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, "--max_steps", "4", "--output_dir", str(folder)])
    return folder


def test_the_recipe_saves_a_loadable_model_results_figures_and_a_card(run_folder):
    from transformers import AutoModel, AutoProcessor

    results = json.loads((run_folder / "results.json").read_text())
    assert results["arithmetic"]["cases"] == 72 * 5 and results["held_out_combinations"] == 12
    assert results["arithmetic"]["image_only"]["image"] is not None
    for figure in ("arithmetic.png", "cross_modal.png"):
        assert (run_folder / figure).stat().st_size > 0
    model, processor = AutoModel.from_pretrained(run_folder), AutoProcessor.from_pretrained(run_folder)
    assert isinstance(model, MultimodalVAEModel) and isinstance(processor, MultimodalVAEProcessor)
    card = str(model_card(run_folder, "someone/multimodal-vae"))
    assert "Wu & Goodman" in card and "image-only VAE" in card and "caption → image" in card


@pytest.fixture(scope="module")
def user_dataset(tmp_path_factory):
    """A user's dataset saved to disk: scene images and captions under other column names, with spoken captions as
    bare float lists (their rate given by --audio_sampling_rate), a train and a test split. Test row 5's clip is
    repeated to twice its length, longer than any training clip (all under 3 s)."""
    import datasets

    scenes = load_attribute_scenes(num_train=48, image_size=16, num_held_out=0, audio=True)
    test = scenes["test"].select(range(0, 72, 3)).to_list()
    test[5]["audio"] = test[5]["audio"] * 2
    folder = tmp_path_factory.mktemp("user_data") / "pictures"
    datasets.DatasetDict({
        split: rows.select_columns(["image", "text", "audio"]).rename_columns({"image": "picture", "text": "caption",
                                                                               "audio": "speech"})
        for split, rows in (("train", scenes["train"]),
                            ("test", datasets.Dataset.from_list(test, features=scenes["test"].features)))
    }).save_to_disk(folder)
    return folder


USER_RUN = ["--image_column", "picture", "--text_column", "caption", "--max_steps", "4"]


def test_a_users_dataset_trains_and_reports_what_needs_no_analyser(user_dataset, tmp_path):
    results = MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, *USER_RUN, "--dataset_name", str(user_dataset),
                                          "--output_dir", str(tmp_path)])
    assert results["analyser_scores"] is None and "only for the built-in attribute scenes" in results["note"]
    assert results["test_rows"] == results["test_rows_scored"] == 24 and results["modalities"] == ["image", "text"]
    elbo = results["heldout_elbo_nats"]
    assert set(elbo) == {"multimodal_joint", "multimodal_image_only", "image_only_vae"}
    assert {"image_nll", "text_nll", "kl"} <= set(elbo["multimodal_joint"])
    assert all(torch.isfinite(torch.tensor(terms["negative_elbo_image"]))
               for name, terms in elbo.items() if name != "multimodal_joint")
    retrieval = results["retrieval"]
    assert retrieval["chance"]["R@1"] == pytest.approx(1 / 24) and 0 <= retrieval["caption_to_image"]["R@1"] <= 1
    arithmetic = results["arithmetic"]
    assert arithmetic["edits"].startswith("picked from the captions") and arithmetic["cases"] > 0
    assert 0 < len(arithmetic["examples"]) <= 8 and all(e["minus"] in e["source_caption"].split()
                                                       for e in arithmetic["examples"])
    assert (tmp_path / "arithmetic.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["note"] == results["note"]
    assert "only for the built-in attribute scenes" in str(model_card(tmp_path, "someone/multimodal-vae"))


def test_a_users_dataset_with_spoken_captions_and_given_edits(user_dataset, tmp_path):
    results = MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, *USER_RUN, "--dataset_name", str(user_dataset), "--audio", "true",
                                          "--audio_column", "speech", "--audio_sampling_rate", "16000",
                                          "--image_only_baseline", "false", "--arithmetic_edits", "0:red:blue",
                                          "1:circle:square", "--output_dir", str(tmp_path)])
    assert results["modalities"] == ["image", "text", "audio"] and "audio_nll" in results["heldout_elbo_nats"]["multimodal_joint"]
    # The model reads clips up to the longest training clip rounded up (3 s): the doubled test clip is not scored.
    assert (results["test_rows"], results["test_rows_scored"]) == (24, 23)
    assert "speech_to_image" in results["retrieval"]
    assert results["arithmetic"]["edits"] == "given" and results["arithmetic"]["cases"] == 2
    assert [(e["row"], e["minus"], e["plus"]) for e in results["arithmetic"]["examples"]] == [(0, "red", "blue"),
                                                                                            (1, "circle", "square")]


@pytest.mark.parametrize("flags, match", [
    (["--image_column", "photo"], r"lacks the column\(s\) \['photo'\].*--image_column"),
    (["--text_column", "label"], r"lacks the column\(s\) \['label'\].*--text_column"),
    (["--audio", "true", "--audio_column", "voice"], r"lacks the column\(s\) \['voice'\].*--audio_column"),
    (["--audio", "true", "--audio_column", "speech", "--audio_sampling_rate", "16000", "--max_audio_seconds", "1"],
     r"longest training clip lasts .* at most 1 s: raise --max_audio_seconds"),
    (["--arithmetic_edits", "0-red-blue"], "ROW:WORD_A:WORD_B"),
    (["--arithmetic_edits", "0:red:giraffe"], r"\['giraffe'\] appear in no training caption"),
    (["--arithmetic_edits", "99:red:blue"], "row 99 is outside the 24 test rows"),
], ids=["missing image column", "missing text column", "missing audio column", "training clips too long", "edit format",
        "unknown word",
        "row out of range"])
def test_bad_user_data_settings_are_refused(user_dataset, tmp_path, flags, match):
    columns = ["--image_column", "picture", "--text_column", "caption"]
    with pytest.raises(ValueError, match=match):
        MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, *columns, *flags, "--max_steps", "1", "--image_only_baseline", "false",
                                    "--dataset_name", str(user_dataset), "--output_dir", str(tmp_path)])


def test_the_spoken_scenes_run_scores_speech_to_image_and_spoken_arithmetic(tmp_path):
    results = MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, "--audio", "true", "--max_steps", "2", "--image_only_baseline",
                                          "false", "--output_dir", str(tmp_path)])
    assert results["modalities"] == ["image", "text", "audio"]
    assert set(results["speech_to_image"]) == {"all", "held_out"} and "speech_vectors" in results["arithmetic"]["multimodal"]
    from transformers import AutoModel

    assert AutoModel.from_pretrained(tmp_path).config.audio_modality
    assert "spoken caption → image" in MULTIMODAL_VAE_RECIPE.results_table(results)


def test_killed_training_resumes_from_its_last_checkpoint_to_the_same_result(tmp_path):
    def command(folder, *extra):
        return [sys.executable, str(SCRIPT), *TINY_RUN, "--max_steps", "12", "--save_steps", "4",
                "--save_total_limit", "5", "--image_only_baseline", "false", "--output_dir", str(folder), *extra]

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(command(uninterrupted), check=True, capture_output=True)
    kill_once_written(command(interrupted), interrupted / "checkpoint-4" / "trainer_state.json")
    assert not (interrupted / "results.json").exists()
    subprocess.run(command(interrupted, "--resume_from_checkpoint", "last"), check=True, capture_output=True)
    full = json.loads((uninterrupted / "results.json").read_text())
    resumed = json.loads((interrupted / "results.json").read_text())
    assert resumed["train_loss_last"] == full["train_loss_last"]
    weights, resumed_weights = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert weights.keys() == resumed_weights.keys()
    assert all((resumed_weights[k] - weights[k]).abs().max() < 1e-6 for k in weights)


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def train(folder, *extra, launcher=(sys.executable,)):
        run = subprocess.run([*launcher, str(SCRIPT), *TINY_RUN, "--output_dir", str(folder), "--max_steps", "4",
                              "--save_strategy", "no", "--logging_steps", "1", *extra],
                             capture_output=True, env=env, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads((folder / "results.json").read_text()), run

    bf16, _ = train(tmp_path / "bf16", "--bf16", "--image_only_baseline", "false")
    fp32, _ = train(tmp_path / "fp32", "--image_only_baseline", "false")
    assert torch.isfinite(torch.tensor([bf16["train_loss_first"], bf16["train_loss_last"]])).all()
    # bf16 autocast must have run (another loss) and stay close to float32 (bf16 keeps 8 mantissa bits, eps 3.9e-3;
    # the contract measured 1e-4 to 2e-3 relative on one step).
    assert bf16["train_loss_last"] != fp32["train_loss_last"]
    assert abs(bf16["train_loss_last"] - fp32["train_loss_last"]) < 2e-2 * abs(fp32["train_loss_last"])

    # Two processes (gloo), with spoken captions and the image-only baseline trained the same way.
    two, run = train(tmp_path / "two", "--per_device_train_batch_size", "4", "--audio", "true",
                     launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29561"))
    assert torch.isfinite(torch.tensor([two["train_loss_first"], two["train_loss_last"]])).all()
    # 2 processes × 4 rows × 4 steps = 32 of the 64 training rows: half an epoch (one process alone: a quarter).
    assert two["train_epochs"] == pytest.approx(0.5), run.stderr[-2000:]
    assert two["arithmetic"]["image_only"]["image"] is not None and "speech_to_image" in two


def test_edit_rows_number_the_whole_test_split_and_a_row_left_unscored_is_refused():
    scored = [True, False, True, True]  # test row 1 has a word no training caption holds
    assert parse_edits(["2:red:blue", "0:small:large"], scored, {"red", "blue", "small", "large"}) == [
        (1, "red", "blue"), (0, "small", "large")]  # test row 2 is the second scored row
    with pytest.raises(ValueError, match="test row 1 is not scored"):
        parse_edits(["1:red:blue"], scored, {"red", "blue"})


def test_edit_words_are_picked_among_frequent_words_found_apart_never_among_words_of_most_captions():
    captions = ["a red cat", "a red dog", "a blue cat", "a blue dog", "a red cat on a mat", "a blue bird"]
    # "a" is in every caption; red/blue are each in 3 captions without the other (cat/dog: 3 and 2).
    assert set(pick_edit_words(captions)) == {"red", "blue"}
    with pytest.raises(ValueError, match="--arithmetic_edits"):
        pick_edit_words(["a cat", "a cat", "a cat"])


def test_audio_training_of_a_model_saved_without_audio_is_refused(run_folder, tmp_path):
    with pytest.raises(ValueError, match="trained without audio"):
        MULTIMODAL_VAE_RECIPE.main([*TINY_RUN, "--model_name_or_path", str(run_folder), "--audio", "true",
                                    "--max_steps", "1", "--output_dir", str(tmp_path)])
