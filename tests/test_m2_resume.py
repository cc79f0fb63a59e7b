import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from interruption import kill_once_written

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_captioning.py"


def training_command(output_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(SCRIPT), "--output_dir", str(output_dir), "--model_size", "small", "--image_size", "32",
        "--num_train_images", "60", "--num_eval_images", "8", "--max_test_images", "4", "--max_steps", "60",
        "--warmup_steps", "10", "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "20",
        "--save_total_limit", "5", "--eval_strategy", "no", "--logging_steps", "5", "--seed", "7", "--num_beams", "2",
        "--no_meteor", "--use_cpu", "--disable_tqdm", "true", *extra,
    ]


def test_killed_training_resumes_from_its_last_checkpoint_to_the_same_result(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(training_command(uninterrupted), check=True, capture_output=True)

    kill_once_written(training_command(interrupted), interrupted / "checkpoint-20" / "trainer_state.json")
    assert not (interrupted / "results.json").exists()

    subprocess.run(training_command(interrupted, "--resume_from_checkpoint", "last"), check=True, capture_output=True)
    resumed_results = json.loads((interrupted / "results.json").read_text())
    full_results = json.loads((uninterrupted / "results.json").read_text())
    assert resumed_results["train_loss_last"] == full_results["train_loss_last"]
    resumed, full = load_file(interrupted / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert resumed.keys() == full.keys()
    assert all((resumed[k] - full[k]).abs().max() < 1e-6 for k in full)
