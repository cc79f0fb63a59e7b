"""benchmarks/glide.py --quick end to end: its three comparisons are reported, with and without a trained pipeline.
Timings on a shared CI machine prove nothing, so only the report's structure and the exact output match are checked."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_mmdl.data.scenes import COLOURS
from hf_mmdl.data.text_to_image import POSITIONS, PROMPT_SHAPES, scene_caption
from hf_mmdl.modeling import GlideModel
from hf_mmdl.pipelines import GlidePipeline, glide_scheduler
from hf_mmdl.processing import GlideProcessor, train_caption_tokenizer
from hf_mmdl.training.text_to_image import glide_config_for

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "glide.py"


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=True)


def save_tiny_pipeline(path: Path) -> None:
    """What the training script saves, untrained: part 2 only needs a loadable folder to run its comparison."""
    captions = [scene_caption(*c) for c in itertools.product(PROMPT_SHAPES, COLOURS, POSITIONS)]
    tokenizer = train_caption_tokenizer(captions, min_count=1)
    torch.manual_seed(0)
    model = GlideModel(glide_config_for("tiny", len(tokenizer), tokenizer.pad_token_id, 16)).eval()
    # A zero output convolution (ADM's init) would make every output 0 and the exact-match check empty.
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    GlidePipeline(glide=model, processor=GlideProcessor.for_config(model.config, tokenizer),
                  scheduler=glide_scheduler(model)).save_pretrained(path)


def test_quick_benchmark_reports_all_three_comparisons_on_a_saved_pipeline(tmp_path):
    save_tiny_pipeline(tmp_path / "pipe")
    out = run_benchmark("--pipeline", str(tmp_path / "pipe"), "--output", str(tmp_path / "results.json")).stdout
    results = json.loads((tmp_path / "results.json").read_text())

    step = results["guided_step"]
    assert step["unet_batch"] == 4 and step["steps"] == 3 and step["goal"] == 1.05
    assert step["ratio"] > 0 and step["ratio_fast_scheduler"] > 0
    # Each ratio is the quotient of the times reported beside it (an inverted or stale ratio fails), and the verdict
    # printed is the one that ratio gives.
    seconds = step["seconds_per_step"]
    assert step["ratio"] == pytest.approx(seconds["pipeline_ancestral"] / seconds["denoise"])
    assert step["ratio_fast_scheduler"] == pytest.approx(seconds["pipeline_fast"] / seconds["denoise"])
    assert ("goal ≤ 1.05: met" if step["ratio"] <= 1.05 else "goal ≤ 1.05: NOT met") in out

    sampling = results["fast_vs_ancestral"]
    assert {name: row["steps"] for name, row in sampling["samplers"].items()} == {"ancestral": "10", "fast": "4"}
    for row in sampling["samplers"].values():
        assert 0 <= row["colour_accuracy"] <= 1 and 0 <= row["position_accuracy"] <= 1 and row["seconds"] > 0
    assert sampling["ratio_time"] > 0 and sampling["guidance_scale"] == 3.0
    rows = sampling["samplers"]
    assert sampling["ratio_time"] == pytest.approx(rows["fast"]["seconds"] / rows["ancestral"]["seconds"])

    unet = results["denoise_vs_unet"]
    assert unet["ratio"] > 0 and unet["max_abs_diff"] == 0 and unet["max_abs_output"] > 0
    assert unet["ratio"] == pytest.approx(unet["seconds_per_call"]["denoise"] / unet["seconds_per_call"]["bare_unet"])

    for heading in ("1. Guided sampling step", "2. Fast deterministic vs ancestral sampling",
                    "3. GlideModel.denoise vs bare diffusers UNet2DConditionModel"):
        assert heading in out
    assert "max |ours − diffusers| = 0 " in out
    assert "guided step / doubled UNet forward" in out and "fast 4-step / ancestral 10-step time" in out
    assert "GlideModel.denoise / diffusers UNet" in out


def test_quick_benchmark_without_a_trained_pipeline_says_how_to_make_one(tmp_path):
    missing = tmp_path / "no-pipeline"
    out = run_benchmark("--pipeline", str(missing), "--output", str(tmp_path / "results.json")).stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"]["source"] == "random"
    assert f"python examples/run_text_to_image.py --output_dir {missing}" in results["fast_vs_ancestral"]["skipped"]
    assert "2. Fast vs ancestral sampling: skipped" in out
    assert results["guided_step"]["ratio"] > 0 and results["denoise_vs_unet"]["max_abs_diff"] == 0
