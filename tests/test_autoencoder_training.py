"""Training the autoencoders with Trainer: learning on real held-out digits, schedules, resume, scaling, CLI (LoRA:
the model contract, tests/test_vae_contract.py and tests/test_dvae_contract.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from hf_mmdl.training.autoencoder import (
    AutoencoderDataArguments,
    AutoencoderModelArguments,
    AutoencoderTrainingArguments,
    run_autoencoder,
)

from interruption import kill_once_written

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_autoencoder.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
DIGITS = AutoencoderDataArguments(dataset_name="mnist", image_size=16, num_train_images=2000, num_eval_images=200)


def train(tmp_path, model_type: str, max_steps: int, learning_rate: float = 1e-3, **model_overrides) -> dict:
    return run_autoencoder(
        AutoencoderModelArguments(model_type=model_type, model_size="tiny", **model_overrides),
        DIGITS,
        AutoencoderTrainingArguments(
            output_dir=str(tmp_path / model_type), max_steps=max_steps, track_every=max_steps // 6, logging_steps=50,
            learning_rate=learning_rate, disable_tqdm=True, seed=0,
        ),
    )


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    return train(tmp_path_factory.mktemp("vae"), "vae", 300, learning_rate=3e-3), tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def trained_dvae(tmp_path_factory):
    # On 16 px digits most tokens are background; 4× DALL-E's per-position KL weight keeps more codes in use within
    # the few hundred steps a unit test can afford (the quickstart uses the paper's weight).
    folder = tmp_path_factory.mktemp("dvae")
    return train(folder, "dvae", 600, beta=26.4), folder / "dvae"


def test_vae_reconstructs_held_out_digits_far_better_than_the_mean_image(trained_vae):
    metrics = trained_vae[0]["validation"]
    assert metrics["mse"] < 0.3 * metrics["mean_image_mse"]
    assert metrics["psnr"] > metrics["mean_image_psnr"] + 5
    assert 0 < metrics["bits_per_dim"] < trained_vae[0]["history"][0]["bits_per_dim"]


def test_dvae_tokens_reconstruct_held_out_digits_with_a_used_codebook(trained_dvae):
    results, _ = trained_dvae
    metrics = results["validation"]
    assert metrics["mse"] < 0.7 * metrics["mean_image_mse"]
    # Most positions of a digit are background, which keeps the perplexity of the token histogram low; a collapsed
    # codebook would use 1-3 codes.
    assert metrics["codes_used"] >= 10 and metrics["perplexity"] > 3, "codebook collapse"
    first, last = results["history"][0], results["history"][-1]
    assert first["temperature"] > 0.5 and last["temperature"] == pytest.approx(1 / 16)
    assert abs(last["soft_hard_gap"]) < abs(first["soft_hard_gap"])  # the relaxation closes in on the argmax tokens


def test_training_saves_a_loadable_model_results_and_figures(trained_dvae):
    results, folder = trained_dvae
    assert json.loads((folder / "results.json").read_text())["validation"] == results["validation"]
    for figure in ("reconstructions.png", "soft_vs_hard.png"):
        assert (folder / figure).stat().st_size > 1000
    model, processor = AutoModel.from_pretrained(folder), AutoProcessor.from_pretrained(folder)
    assert model.config.temperature_anneal_steps == 360 and processor.image_mode == "L"
    assert model.schedule_step is None and model.current_temperature() == pytest.approx(1 / 16)


def test_vae_figures_include_samples_and_interpolations(trained_vae):
    folder = trained_vae[1]
    for figure in ("reconstructions.png", "samples.png", "interpolations.png", "training_curve.png"):
        assert next(folder.rglob(figure)).stat().st_size > 1000


def script(output_dir: Path, *extra: str) -> list[str]:
    return [
        str(SCRIPT), "--model_type", "dvae", "--model_size", "tiny", "--dataset_name", "scenes", "--image_size", "16",
        "--num_train_images", "128", "--num_eval_images", "16", "--output_dir", str(output_dir), "--logging_steps", "1",
        "--seed", "5", "--use_cpu", "--disable_tqdm", "true", "--track_every", "0", "--dataloader_drop_last", "true",
        *extra,
    ]


def test_killed_training_resumes_to_the_same_weights_and_schedule(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    steps = ["--max_steps", "40", "--save_strategy", "steps", "--save_steps", "10", "--save_total_limit", "5",
             "--per_device_train_batch_size", "8"]
    subprocess.run([sys.executable, *script(uninterrupted, *steps)], check=True, capture_output=True)
    kill_once_written([sys.executable, *script(interrupted, *steps)], interrupted / "checkpoint-20" / "trainer_state.json")
    subprocess.run([sys.executable, *script(interrupted, *steps, "--resume_from_checkpoint", "last")], check=True,
                   capture_output=True)
    resumed, full = json.loads((interrupted / "results.json").read_text()), json.loads((uninterrupted / "results.json").read_text())
    # The gumbel noise comes from the RNG states saved in the checkpoint, τ and β from the restored global step.
    assert resumed["train_loss_last"] == full["train_loss_last"]
    resumed_weights, full_weights = load_file(interrupted / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert all((resumed_weights[k] - full_weights[k]).abs().max() < 1e-6 for k in full_weights)


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    common = ["--max_steps", "6", "--save_strategy", "no"]
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

    subprocess.run([sys.executable, *script(tmp_path / "one", *common, "--per_device_train_batch_size", "8")],
                   check=True, capture_output=True, env=env)
    subprocess.run(TORCHRUN + ["--master_port", "29541", *script(tmp_path / "two", *common, "--per_device_train_batch_size", "4")],
                   check=True, capture_output=True, env=env)
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    # Same data and weights; only the gumbel noise differs per rank, so the losses agree closely but not exactly.
    # A loss scaled by the number of processes would be 2× off.
    assert two["train_loss_first"] == pytest.approx(one["train_loss_first"], rel=0.05)


def test_autoencoder_command_takes_the_training_script_flags(tmp_path):
    from hf_mmdl.cli import main

    main(["autoencoder", "--model_type", "vae", "--model_size", "tiny", "--dataset_name", "scenes", "--image_size", "16",
          "--num_train_images", "32", "--num_eval_images", "8", "--max_steps", "2", "--track_every", "0",
          "--output_dir", str(tmp_path), "--disable_tqdm", "true"])
    assert json.loads((tmp_path / "results.json").read_text())["model_type"] == "image_vae"


def test_model_card_of_a_trained_dvae_reports_its_measured_numbers(trained_dvae):
    from hf_mmdl.hub import model_card

    results, folder = trained_dvae
    card = model_card(folder, "someone/dvae-digits")
    text = str(card)
    assert card.data.pipeline_tag == "image-to-image" and "ramesh2021zero" in text
    assert f"| {results['validation']['mse']:.4f} |" in text and "baseline: mean training image" in text
    assert "MNIST" in text and "get_codebook_indices" in text and 'AutoModel.from_pretrained("someone/dvae-digits")' in text


def test_accelerate_fsdp_on_cpu_is_refused_with_an_explanation(tmp_path):
    with pytest.raises(ValueError, match="FSDP"):
        run_autoencoder(
            AutoencoderModelArguments(model_type="dvae", model_size="tiny"), DIGITS,
            AutoencoderTrainingArguments(output_dir=str(tmp_path), max_steps=1, use_cpu=True, fsdp="full_shard"),
        )


def test_results_tables_put_bits_per_dim_and_codebook_use_in_context():
    from hf_mmdl.architectures.autoencoders import autoencoder_results_table

    base = {"mse": 0.01, "psnr": 20.0, "mean_image_mse": 0.06, "mean_image_psnr": 12.2}
    vae = autoencoder_results_table({"model_type": "image_vae", "validation": {**base, "bits_per_dim": 6.25}})
    assert "6.25 bits/dim" in vae and "uniform model of 8-bit pixels needs 8.00" in vae
    dvae = autoencoder_results_table({"model_type": "dvae", "vocab_size": 512, "validation": {
        **base, "perplexity": 24.5, "codes_used": 109, "temperature": 0.0625, "soft_mse": 0.01}})
    assert "109 codes used of 512" in dvae
