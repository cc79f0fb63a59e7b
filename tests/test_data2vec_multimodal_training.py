"""Pre-training data2vec-multimodal with Trainer: the recipe's run, its batches, figures, saved folder and an
interrupted run resumed to the uninterrupted result (the EMA teacher included). Learning itself is shown by the
quickstart's and README's measured runs and, on a fixed batch, by the model contract."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForPreTraining, AutoProcessor

from hf_mmdl.data.trimodal import load_trimodal_dataset
from hf_mmdl.processing import Data2VecMultimodalProcessor
from hf_mmdl.training.data2vec_multimodal import (
    DATA2VEC_MULTIMODAL_RECIPE, Data2VecTrainer, ModalityBatchCollator, hold_out_concepts, parse_ratios,
)

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


@pytest.fixture(scope="module")
def scenes60():
    return load_trimodal_dataset("scenes", num_train=60, num_test=30, image_size=24)


def test_held_out_concepts_never_reach_training_in_any_modality_nor_the_no_pairs_baseline(scenes60, tmp_path,
                                                                                           monkeypatch):
    # The concept order of the scenes' ClassLabel, the first three: each has 2 of the 60 training rows.
    held_out = ["red circle", "red square", "red triangle"]
    seen_inputs = []
    original = Data2VecTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen_inputs.append({k: v.detach().clone() for k, v in inputs.items()})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(Data2VecTrainer, "compute_loss", spy)
    arguments, given = DATA2VEC_MULTIMODAL_RECIPE.parse(
        [*TINY_RUN, "--num_train_images", "60", "--output_dir", str(tmp_path), "--max_steps", "8",
         "--no_pairs_baseline", "true", "--held_out_concepts", ", ".join(held_out)])
    results = DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given)
    assert len(seen_inputs) == 16, "both the model and its no-pairs baseline train 8 steps"
    assert results["held_out_concepts"] == held_out
    assert (results["train_rows"], results["held_out_train_rows"], results["test_rows"]) == (54, 6, 30)
    assert json.loads((tmp_path / "results.json").read_text())["held_out_concepts"] == held_out

    # Every training row, processed alone by the run's processor: what a batch row of it looks like.
    processor = AutoProcessor.from_pretrained(tmp_path)
    train = scenes60["train"]
    names = train.features["concept"].names
    is_held_out = [names[c] in held_out for c in train["concept"]]
    assert sum(is_held_out) == 6
    reference = [processor(text=[row["text"]], images=[row["image"]], audio=[row["audio"]], sampling_rate=16000)
                 for row in train]

    def which_rows(batch, modality, i):
        """The training rows whose processed `modality` equals row i of the batch."""
        if modality == "text":
            ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
            return [r for r, ref in enumerate(reference) if torch.equal(ref["input_ids"][0], ids)]
        if modality == "image":
            return [r for r, ref in enumerate(reference) if torch.equal(ref["pixel_values"][0], batch["pixel_values"][i])]
        length = int(batch["audio_attention_mask"][i].sum())
        values = batch["input_values"][i][:length]
        return [r for r, ref in enumerate(reference) if ref["input_values"].shape[1] == length
                and torch.allclose(ref["input_values"][0], values, atol=1e-4)]

    found = Counter()
    keys = {"text": "input_ids", "image": "pixel_values", "audio": "input_values"}
    for batch in seen_inputs:
        for modality, key in keys.items():
            for i in range(len(batch.get(key, ()))):
                rows = which_rows(batch, modality, i)
                # A truncated caption may match several rows; only a row that nothing seen explains is a leak.
                assert rows and not all(is_held_out[r] for r in rows), f"a held-out {modality} reached training"
                found[modality] += 1
    # The matching itself works: every modality's training rows were recognised.
    assert min(found[m] for m in keys) > 0, found


def test_held_out_concepts_drawn_by_count_follow_the_seed_and_keep_every_row_for_the_probes(scenes60):
    splits = scenes60
    kept, names = hold_out_concepts(splits, count=4, seed=1)
    assert len(names) == 4 and hold_out_concepts(splits, count=4, seed=1)[1] == names
    assert hold_out_concepts(splits, count=4, seed=2)[1] != names
    concept_names = splits["train"].features["concept"].names
    assert not {concept_names[c] for c in kept["train"]["concept"]} & set(names)
    assert len(kept["train"]) == 52 and len(kept["probe_train"]) == 60 and len(kept["test"]) == 30
    assert hold_out_concepts(splits) == (splits, [])


@pytest.mark.parametrize("names, count, message", [
    ("red circle", 2, "give one of the two"),
    ("", -1, "0 or more"),
    ("", 29, "at least two must stay"),
    ("red circle,pink circle", 0, r"\['pink circle'\], which are not concepts"),
])
def test_bad_held_out_concepts_are_refused(scenes60, names, count, message):
    with pytest.raises(ValueError, match=message):
        hold_out_concepts(scenes60, names, count)


def test_a_held_out_concept_without_test_rows_is_refused(scenes60):
    splits = datasets.DatasetDict({**scenes60, "test": scenes60["test"].filter(lambda row: row["concept"] != 0)})
    with pytest.raises(ValueError, match=r"\['red circle'\] have no test rows"):
        hold_out_concepts(splits, "red circle")


@pytest.mark.parametrize("dataset, flag, message", [
    ("my/set", ["--num_train_images", "50"], "--num_train_images does not apply to --dataset_name my/set"),
    ("twemoji", ["--num_test_images", "50"], "--num_test_images does not apply to --dataset_name twemoji"),
    ("scenes", ["--audio_column", "speech"], "--audio_column does not apply to --dataset_name scenes"),
])
def test_a_data_flag_the_dataset_would_ignore_is_refused(tmp_path, dataset, flag, message):
    arguments, given = DATA2VEC_MULTIMODAL_RECIPE.parse(
        [*TINY_RUN[:2], "--dataset_name", dataset, *flag, "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=message):
        DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given)
