"""Pre-training data2vec-multimodal with Trainer: the recipe's run, its batches, figures, saved folder and an
interrupted run resumed to the uninterrupted result (the EMA teacher included). Learning itself is shown by the
quickstart's and README's measured runs and, on a fixed batch, by the model contract."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForPreTraining, AutoProcessor

from hf_mmdl.data.trimodal import load_trimodal_dataset
from hf_mmdl.processing import Data2VecMultimodalProcessor
from hf_mmdl.training.data2vec_multimodal import DATA2VEC_MULTIMODAL_RECIPE, ModalityBatchCollator, parse_ratios

from interruption import kill_once_written

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_data2vec.py"
TINY_RUN = ["--model_size", "tiny", "--image_size", "24", "--num_train_images", "30", "--num_test_images", "30",
            "--per_device_train_batch_size", "8", "--logging_steps", "2", "--seed", "3", "--use_cpu",
            "--disable_tqdm", "true", "--no_pairs_baseline", "false", "--vocab_size", "300"]


@pytest.fixture(scope="module")
def rows():
    return load_trimodal_dataset("scenes", num_train=30, num_test=30, image_size=24)["train"]


def test_batches_follow_the_modality_ratios_and_the_paired_fraction(rows):
    processor = Data2VecMultimodalProcessor.for_texts(rows["text"], image_size=24, vocab_size=300)
    collator = ModalityBatchCollator(processor, parse_ratios("text=1,image=3"), 0.25, seed=0)
    kinds = Counter(collator.kind([{"text": f"caption {i} {j}"} for j in range(4)]) for i in range(2000))
    assert abs(kinds[("text", "image", "audio")] / 2000 - 0.25) < 0.04
    assert abs(kinds[("image",)] / (kinds[("image",)] + kinds[("text",)]) - 0.75) < 0.04
    assert ("audio",) not in kinds
    batch = collator([rows[i] for i in range(4)])
    assert set(batch) in ({"input_ids", "attention_mask"}, {"pixel_values"},
                          {"input_ids", "attention_mask", "pixel_values", "input_values", "audio_attention_mask"})


@pytest.mark.parametrize("text", ["video=1", "text=x", "text=0", ""])
def test_bad_modality_ratios_are_refused(text):
    with pytest.raises(ValueError, match="modality_ratios"):
        parse_ratios(text)


def test_a_recipe_run_reports_probes_retrieval_and_baselines_and_saves_a_loadable_folder(tmp_path):
    arguments, given = DATA2VEC_MULTIMODAL_RECIPE.parse(
        [*TINY_RUN, "--output_dir", str(tmp_path), "--max_steps", "6", "--no_pairs_baseline", "true"])
    results = DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given)
    for report in ("trained", "teacher", "random_init", "no_pairs"):
        assert set(results[report]["probe"]) == {"text", "image", "audio"}
        assert len(results[report]["retrieval"]) == 6
    assert results["chance"]["R@1"] == pytest.approx(1 / 30)
    assert {e["step"] for e in results["history"]} == {2, 4, 6}
    assert any("cross_modal_loss" in e for e in results["history"])
    for figure in ("embedding_space.png", "losses.png", "variances.png"):
        assert (tmp_path / figure).stat().st_size > 0
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    features = model.data2vec_multimodal.get_text_features(**processor(text=["a small red circle"]))
    assert features.shape == (1, model.config.projection_dim)
    assert json.loads((tmp_path / "results.json").read_text())["trained"] == results["trained"]
    table = DATA2VEC_MULTIMODAL_RECIPE.results_table(results)
    image_row = next(line for line in table.splitlines() if line.startswith("| image |"))
    expected = [results[r][m]["image"] for m in ("probe", "nearest_neighbour") for r in ("trained", "teacher", "random_init")]
    assert image_row == "| image | " + " | ".join(f"{v:.1%}" for v in expected) + " |"
    # The no-pairs baseline is saved for `hf-mmdl analyse`: another model of the same configuration.
    baseline = AutoModelForPreTraining.from_pretrained(tmp_path / "no_pairs")
    assert baseline.config.to_diff_dict() | {"_name_or_path": ""} == model.config.to_diff_dict() | {"_name_or_path": ""}
    assert AutoProcessor.from_pretrained(tmp_path / "no_pairs").tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert not torch.equal(baseline.data2vec_multimodal.projections["text"].weight,
                           model.data2vec_multimodal.projections["text"].weight)


def test_the_teacher_follows_the_trainer_steps(tmp_path):
    arguments, given = DATA2VEC_MULTIMODAL_RECIPE.parse([*TINY_RUN, "--output_dir", str(tmp_path), "--max_steps", "3"])
    DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    pairs = zip(model.teacher_layers.parameters(), model.data2vec_multimodal.layers.parameters())
    moved = [not torch.equal(t, s) for t, s in pairs]
    assert any(moved), "the teacher never left the student's initial weights or equals the student"


def test_killed_training_resumes_to_the_same_student_and_teacher(tmp_path):
    def command(folder, *extra):
        return [sys.executable, str(SCRIPT), *TINY_RUN, "--output_dir", str(folder), "--max_steps", "8",
                "--save_steps", "3", "--save_total_limit", "3", *extra]

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(command(uninterrupted), check=True, capture_output=True)
    kill_once_written(command(interrupted), interrupted / "checkpoint-3" / "trainer_state.json")
    subprocess.run(command(interrupted, "--resume_from_checkpoint", "last"), check=True, capture_output=True)
    full, resumed = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert full.keys() == resumed.keys() and any(k.startswith("teacher_layers.") for k in full)
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def train(folder, *extra, launcher=(sys.executable,)):
        run = subprocess.run([*launcher, str(SCRIPT), *TINY_RUN, "--output_dir", str(folder), "--max_steps", "4",
                              "--save_strategy", "no", "--logging_steps", "1", *extra],
                             check=True, capture_output=True, env=env, text=True)
        return json.loads((folder / "results.json").read_text()), run

    bf16, _ = train(tmp_path / "bf16", "--bf16")
    fp32, _ = train(tmp_path / "fp32")
    assert torch.isfinite(torch.tensor([bf16["train_loss_first"], bf16["train_loss_last"]])).all()
    # bf16 autocast must have run (another loss) and stay close to float32 (measured: 2.0e-4 relative after 4 steps;
    # bf16 keeps 8 mantissa bits, eps 3.9e-3).
    assert bf16["train_loss_last"] != fp32["train_loss_last"]
    assert abs(bf16["train_loss_last"] - fp32["train_loss_last"]) < 1e-2 * abs(fp32["train_loss_last"])

    two, run = train(tmp_path / "two", "--per_device_train_batch_size", "4",
                     launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29547"))
    assert torch.isfinite(torch.tensor([two["train_loss_first"], two["train_loss_last"]])).all()
    # 2 processes × 4 rows: 30 training rows are one epoch in 4 optimizer steps (the last batch is short).
    assert two["train_epochs"] == pytest.approx(1.0), run.stderr[-2000:]
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "two")
    pairs = zip(model.teacher_layers.parameters(), model.data2vec_multimodal.layers.parameters())
    assert any(not torch.equal(t, s) for t, s in pairs), "the teacher did not follow the student under DDP"
