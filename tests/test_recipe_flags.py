"""The generic recipe layer's command line: explicit flags win or are refused by name, help shows each recipe's real
defaults and own options first, step intervals take effect, resuming a fresh folder starts it, warm-ups fit the
run, and user errors print one line."""

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hf_mmdl.cli import main
from hf_mmdl.training.autoencoder import IMAGE_VAE_RECIPE
from hf_mmdl.training.captioning import CAPTIONING_RECIPE, cross_entropy_trainer, paper_schedule_learning_rate
from hf_mmdl.training.common import resolve_checkpoint
from hf_mmdl.training.recipe import WarmupCheck
from hf_mmdl.training.text_to_image import TEXT_TO_IMAGE_RECIPE

TINY = ["--model_size", "tiny", "--image_size", "32", "--num_train_images", "16", "--num_eval_images", "4",
        "--max_test_images", "2", "--use_cpu", "--disable_tqdm", "true", "--no_meteor", "--num_beams", "1"]


def parsed(recipe, argv):
    arguments, given = recipe.parse(argv)
    return recipe.bind(arguments, given)


@pytest.mark.parametrize("flags", [["--learning_rate", "1e-4"], ["--lr_scheduler_type", "cosine"],
                                   ["--learning_rate", "5e-5"]])  # 5e-5 is TrainingArguments' default: still given
def test_a_learning_rate_flag_the_paper_schedule_would_override_is_refused_by_name(flags, tmp_path):
    with pytest.raises(ValueError, match=f"{flags[0]} .*--paper_schedule false"):
        CAPTIONING_RECIPE.main([*flags, "--output_dir", str(tmp_path), *TINY])


def test_with_the_paper_schedule_off_the_given_learning_rate_and_scheduler_are_used(tmp_path):
    args = parsed(CAPTIONING_RECIPE, ["--paper_schedule", "false", "--learning_rate", "1e-4", "--lr_scheduler_type",
                                      "cosine", "--output_dir", str(tmp_path), *TINY])
    data = CAPTIONING_RECIPE.load_data(args)
    model, processor = CAPTIONING_RECIPE.build(args, data)
    trainer = cross_entropy_trainer(model, processor, data, args.training)
    assert trainer.args.learning_rate == 1e-4 and trainer.args.lr_scheduler_type == "cosine"


def test_the_paper_schedule_warms_up_over_a_quarter_of_the_run(tmp_path):
    args = parsed(CAPTIONING_RECIPE, ["--max_steps", "40", "--output_dir", str(tmp_path), *TINY])
    data = CAPTIONING_RECIPE.load_data(args)
    model, processor = CAPTIONING_RECIPE.build(args, data)
    trainer = cross_entropy_trainer(model, processor, data, args.training)
    assert trainer.args.get_warmup_steps(40) == 10
    assert trainer.args.learning_rate == pytest.approx(paper_schedule_learning_rate(model.config.d_model, 10))
    assert trainer.args.lr_scheduler_type == "inverse_sqrt"


def test_a_run_that_ends_inside_its_warm_up_is_warned_about(caplog):
    args = SimpleNamespace(get_warmup_steps=lambda steps: 500)
    with caplog.at_level(logging.WARNING):
        WarmupCheck().on_train_begin(args, SimpleNamespace(max_steps=92), None)
    assert "92 steps ends inside its 500-step" in caplog.text
    caplog.clear()
    WarmupCheck().on_train_begin(args, SimpleNamespace(max_steps=2000), None)
    assert not caplog.text


@pytest.mark.parametrize("recipe", [CAPTIONING_RECIPE, IMAGE_VAE_RECIPE, TEXT_TO_IMAGE_RECIPE])
def test_a_given_save_steps_turns_checkpointing_on_every_that_many_steps(recipe, tmp_path):
    args = parsed(recipe, ["--save_steps", "7", "--output_dir", str(tmp_path)])
    assert args.training.save_strategy == "steps" and args.training.save_steps == 7
    assert parsed(recipe, ["--output_dir", str(tmp_path)]).training.save_strategy != "steps"
    with pytest.raises(ValueError, match="--save_steps 7 has no effect with --save_strategy epoch"):
        parsed(recipe, ["--save_strategy", "epoch", "--save_steps", "7", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("recipe", [CAPTIONING_RECIPE, IMAGE_VAE_RECIPE, TEXT_TO_IMAGE_RECIPE])
def test_a_given_number_of_epochs_sets_the_length_of_a_recipe_with_a_default_step_budget(recipe, tmp_path):
    assert parsed(recipe, ["--output_dir", str(tmp_path)]).training.max_steps > 0
    args = parsed(recipe, ["--num_train_epochs", "3", "--output_dir", str(tmp_path)])
    assert args.training.max_steps == -1 and args.training.num_train_epochs == 3
    both = parsed(recipe, ["--num_train_epochs", "3", "--max_steps", "5", "--output_dir", str(tmp_path)])
    assert both.training.max_steps == 5


def test_resuming_the_last_checkpoint_of_a_fresh_folder_starts_from_the_beginning(tmp_path, caplog):
    args = parsed(CAPTIONING_RECIPE, ["--resume_from_checkpoint", "last", "--output_dir", str(tmp_path / "new")])
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint(args.training) is None
    assert "no checkpoint-* folder" in caplog.text and "starts from the beginning" in caplog.text
    for step in (3, 12):  # finished checkpoints: Trainer writes trainer_state.json last
        (tmp_path / "new" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "new" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint(args.training).endswith("checkpoint-12")
    named = parsed(CAPTIONING_RECIPE, ["--resume_from_checkpoint", str(tmp_path / "gone"), "--output_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        resolve_checkpoint(named.training)


@pytest.mark.parametrize("recipe, flag, default", [
    (CAPTIONING_RECIPE, "--warmup_steps", "0.25"), (CAPTIONING_RECIPE, "--max_steps", "2000"), (CAPTIONING_RECIPE, "--adam_beta2", "0.98"),
    (IMAGE_VAE_RECIPE, "--learning_rate", "0.001"), (IMAGE_VAE_RECIPE, "--max_steps", "1200"),
    (TEXT_TO_IMAGE_RECIPE, "--learning_rate", "0.0006"),
])
def test_help_shows_the_recipes_real_defaults_with_the_flags_meaning(recipe, flag, default):
    text = recipe.parser().format_help()
    line = text[text.index(f"  {flag} "):]
    line = " ".join(line[: line.index("\n  --")].split())
    assert f"(default: {default})" in line and len(line.split()) > 8  # TrainingArguments' explanation is back
    assert f"{flag} {default}" in text[: text.index("options:")]  # and in the summary before the flag list


def test_help_lists_the_recipes_own_options_and_held_out_splits_before_transformers_flags():
    text = CAPTIONING_RECIPE.parser().format_help()
    head = text[: text.index("options:")]
    for own in ("--paper_schedule", "--scst", "--backbone_name_or_path", "--dataset_name", "--num_beams"):
        assert own in head
    assert "--adam_epsilon" not in head and "carved from train: 5% of train each, seed 0" in head
    assert text.splitlines()[0].startswith("usage: hf-mmdl train m2 ")
    assert len(text[: text.index("options:")].splitlines()) < 60


def test_user_errors_print_one_line_and_exit_2_but_faults_keep_their_traceback(tmp_path, monkeypatch):
    out = subprocess.run([sys.executable, "-m", "hf_mmdl.cli", "captioning", "--learning_rate", "1e-4", "--output_dir",
                          str(tmp_path), *TINY], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert errors == [errors[0]] and errors[0].startswith("hf-mmdl captioning: error: --learning_rate 0.0001")
    script = subprocess.run([sys.executable, "examples/run_autoencoder.py", "--model_type", "vae", "--dataset_name",
                             str(tmp_path / "missing"), "--output_dir", str(tmp_path)], capture_output=True, text=True)
    assert script.returncode == 2 and "Traceback" not in script.stderr and "hf-mmdl autoencoder: error:" in script.stderr

    def broken(argv):
        raise KeyError("a fault in the package")

    monkeypatch.setattr(CAPTIONING_RECIPE, "main", broken)
    with pytest.raises(KeyError):
        main(["train", "m2"])


def test_resuming_skips_a_checkpoint_the_run_stopped_writing(tmp_path):
    from transformers import TrainingArguments

    from hf_mmdl.training.common import resolve_checkpoint

    for step, complete in ((3, True), (6, False)):  # killed while saving checkpoint-6: no trainer_state.json yet
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    arguments = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="last", use_cpu=True)
    assert resolve_checkpoint(arguments) == str(tmp_path / "checkpoint-3")
