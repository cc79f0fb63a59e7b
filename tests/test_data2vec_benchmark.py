"""benchmarks/data2vec.py --quick end to end: its three comparisons are reported with positive finite numbers, and
the converted encoders' hidden states equal transformers' Data2Vec models'. Timings on a shared CI machine prove
nothing, so only the report's structure, its arithmetic and the exact output match are checked."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data2vec.py"
MODALITIES = {"text", "image", "audio"}


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("data2vec_benchmark") / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stdout = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--output", str(out)],
                            capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    return json.loads(out.read_text()), stdout


def test_step_comparison_reports_each_modality_with_its_ratio(report):
    results, stdout = report
    part = results["step_vs_plain"]
    assert part["goal"] == 1.35 and part["batch"] == 8
    assert set(part["modalities"]) == MODALITIES
    for modality, row in part["modalities"].items():
        assert positive(row["seconds"]["data2vec"]) and positive(row["seconds"]["plain"]) and row["steps_per_row"] > 0
        # The ratio is the quotient of the times beside it (an inverted or stale ratio fails), and the verdict
        # printed is the one it gives.
        assert row["ratio"] == pytest.approx(row["seconds"]["data2vec"] / row["seconds"]["plain"])
        assert f"{modality:5s} data2vec step / plain masked-prediction step   {row['ratio']:.3f}" in stdout
    assert "1. data2vec student + teacher step vs plain masked-prediction step" in stdout


def test_multi_mask_comparison_reports_time_per_step_curves_and_time_to_accuracy(report):
    results, stdout = report
    part = results["multi_mask"]
    assert part["steps"] == 6 and part["batch"] == 8 and part["train_rows"] == 64 and part["test_rows"] == 30
    assert part["chance"] == pytest.approx(1 / 30)
    variants = part["variants"]
    assert [row["config"] for row in variants.values()] == [
        {"num_mask_copies": 1}, {"num_mask_copies": 8}, {"num_mask_copies": 8, "encode_unmasked_only": True}]
    baseline = variants[part["baseline"]]
    assert part["baseline"] == "data2vec 1.0 (M = 1)" and baseline["ratio_seconds_per_step"] == 1
    for name, row in variants.items():
        assert positive(row["seconds_per_step"]) and positive(row["ratio_seconds_per_step"])
        assert [p["step"] for p in row["curve"]] == [0, 3, 6]
        assert row["curve"][0]["seconds"] == 0 and positive(row["curve"][-1]["seconds"])
        assert row["curve"][-1]["seconds"] == pytest.approx(6 * row["seconds_per_step"])
        for point in row["curve"]:
            assert 0 <= point["linear_probe"] <= 1 and 0 <= point["nearest_neighbour"] <= 1
        # Every variant starts from the same weights, so the same random-init probe.
        assert row["curve"][0] == baseline["curve"][0]
        for metric, target in part["targets"].items():
            reached, saving = row["reached"][metric], row["saving"][metric]
            if reached is None:
                assert saving is None and all(p[metric] < target for p in row["curve"][1:])
            else:
                first = next(p for p in row["curve"][1:] if p[metric] >= target)
                assert reached == {"step": first["step"], "seconds": first["seconds"]}
                assert positive(saving)
                assert saving == pytest.approx(baseline["reached"][metric]["seconds"] / reached["seconds"])
    # 1.0 reaches what it ends at, by the last checkpoint at the latest.
    assert all(baseline["reached"][m] is not None and baseline["saving"][m] == 1 for m in part["targets"])
    assert part["targets"]["linear_probe"] == baseline["curve"][-1]["linear_probe"]
    for metric, learned in part["baseline_learned"].items():
        assert learned == (part["targets"][metric] > baseline["curve"][0][metric])
        assert (f"ends at or below its random-init {'1-NN' if metric == 'nearest_neighbour' else 'linear-probe'}"
                in stdout) != learned
    assert "2. data2vec 2.0 multi-mask vs data2vec 1.0" in stdout
    assert "data2vec 2.0 (M = 8): time per step" in stdout


def test_forward_comparison_reports_throughput_and_equal_hidden_states(report):
    results, stdout = report
    part = results["forward_vs_transformers"]
    assert part["goal"] == 1.0 and part["tolerance"] == 1e-4
    assert {m: row["transformers_class"] for m, row in part["modalities"].items()} == {
        "text": "Data2VecTextModel", "image": "Data2VecVisionModel", "audio": "Data2VecAudioModel"}
    for modality, row in part["modalities"].items():
        assert positive(row["seconds"]["ours"]) and positive(row["seconds"]["transformers"])
        assert row["ratio"] == pytest.approx(row["seconds"]["transformers"] / row["seconds"]["ours"])
        assert row["rows_per_second"]["ours"] == pytest.approx(8 / row["seconds"]["ours"])
        # Converted weights: equal hidden states, and not because every hidden state is 0.
        assert row["outputs_equal"] and row["max_abs_diff"] <= 1e-4 and row["max_abs_hidden"] > 1
        assert f"{modality:5s} forward throughput ours / transformers        {row['ratio']:.3f}" in stdout
    assert "3. Our encoder forward vs transformers' Data2Vec models" in stdout
    assert "DIFFER" not in stdout
