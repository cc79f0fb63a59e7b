"""DeepSpeed ZeRO configs shipped in configs/deepspeed/. Slow (the first run JIT-builds a communication op for a few
minutes) and needs `pip install deepspeed`: run with `python -m pytest -m slow tests/test_m2_deepspeed.py`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "deepspeed"


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json"])
def test_zero_configs_leave_batch_and_precision_to_the_trainer_and_use_a_torch_optimizer(name):
    config = json.loads((CONFIGS / name).read_text())
    assert config["zero_optimization"]["stage"] == int(name[4])
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["bf16"]["enabled"] == "auto"
    # No "optimizer" section: Trainer's torch AdamW is used, so DeepSpeed need not build FusedAdam.
    assert "optimizer" not in config and config["zero_allow_untested_optimizer"] is True


@pytest.mark.slow
def test_trainer_trains_m2_with_zero2_on_cpu_in_one_process(tmp_path):
    pytest.importorskip("deepspeed")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29535",
        str(ROOT / "examples" / "run_captioning.py"), "--deepspeed", str(CONFIGS / "zero2.json"),
        "--output_dir", str(tmp_path), "--model_size", "tiny", "--image_size", "32", "--num_train_images", "32",
        "--num_eval_images", "8", "--max_test_images", "4", "--max_steps", "6", "--warmup_steps", "2",
        "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1",
        "--num_beams", "1", "--no_meteor", "--disable_tqdm", "true",
    ]
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=1200)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["train_loss_last"] < results["train_loss_first"]
