import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_mmdl.training.captioning import (
    CaptioningDataArguments,
    CaptioningModelArguments,
    CaptioningTrainingArguments,
    run_captioning,
)

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS.parent / "examples" / "run_captioning.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
TINY_DATA = CaptioningDataArguments(num_train_images=32, num_eval_images=8, max_test_images=4)


def run_script(output_dir: Path, per_device_batch: int, launcher: list[str]) -> dict:
    args = [
        str(SCRIPT), "--output_dir", str(output_dir), "--model_size", "tiny", "--image_size", "32",
        "--num_train_images", "64", "--num_eval_images", "8", "--max_test_images", "4", "--max_steps", "12",
        "--warmup_steps", "4", "--per_device_train_batch_size", str(per_device_batch), "--eval_strategy", "no",
        "--save_strategy", "no", "--logging_steps", "1", "--seed", "3", "--num_beams", "2", "--no_meteor",
        "--use_cpu", "--disable_tqdm", "true", "--dataloader_drop_last", "true",
    ]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    subprocess.run(launcher + args, check=True, capture_output=True, env=env)
    return json.loads((output_dir / "results.json").read_text())


def test_bf16_mixed_precision_training_on_cpu(tmp_path):
    results = run_captioning(
        CaptioningModelArguments(model_size="tiny", image_size=32),
        TINY_DATA,
        CaptioningTrainingArguments(
            output_dir=str(tmp_path), max_steps=3, warmup_steps=1, logging_steps=1, bf16=True, use_cpu=True,
            eval_strategy="no", save_strategy="no", disable_tqdm=True, num_beams=1, meteor=False,
        ),
    )
    assert torch.isfinite(torch.tensor([results["train_loss_first"], results["train_loss_last"]])).all()


def test_two_process_data_parallel_matches_one_process_with_the_same_global_batch(tmp_path):
    single = run_script(tmp_path / "one", 8, [sys.executable])
    double = run_script(tmp_path / "two", 4, TORCHRUN + ["--master_port", "29533"])
    # Each rank averages over its own caption tokens before DDP averages gradients, so losses match the one-process
    # token mean closely but not exactly. A run that scaled the loss by the process count would be 2x off.
    assert double["train_loss_first"] == pytest.approx(single["train_loss_first"], rel=0.03)
    assert double["train_loss_last"] == pytest.approx(single["train_loss_last"], rel=0.03)


def test_fsdp2_shards_m2_blocks_on_cpu_and_the_gathered_weights_reload_into_a_plain_model(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS))
    subprocess.run(TORCHRUN + ["--master_port", "29534", str(TESTS / "fsdp2_worker.py"), str(tmp_path)],
                   check=True, capture_output=True, env=env)
    sys.path.insert(0, str(TESTS))
    from fsdp2_worker import fixed_batch, tiny_model

    saved = torch.load(tmp_path / "fsdp2.pt", weights_only=True)
    plain = tiny_model().eval()
    untrained = {k: v.clone() for k, v in plain.state_dict().items()}
    plain.load_state_dict(saved["state_dict"])
    assert not torch.equal(plain.lm_head.weight, untrained["lm_head.weight"]), "the sharded run trained"
    batch = fixed_batch()
    with torch.no_grad():
        logits = plain(region_features=batch["region_features"], decoder_input_ids=batch["labels"], use_cache=False).logits
    torch.testing.assert_close(logits, saved["logits"], rtol=1e-5, atol=1e-5)


def test_accelerate_fsdp_on_cpu_is_refused_with_an_explanation(tmp_path):
    with pytest.raises(ValueError, match="FSDP"):
        run_captioning(
            CaptioningModelArguments(model_size="tiny", image_size=32), TINY_DATA,
            CaptioningTrainingArguments(output_dir=str(tmp_path), max_steps=1, use_cpu=True, fsdp="full_shard"),
        )
