"""benchmarks/vokenizer.py --quick end to end: both comparisons are reported with positive finite numbers whose
ratios are the quotients of the times beside them, and the chosen nprobe follows the stated rule. Timings on a
shared CI machine prove nothing, so only the report's structure and arithmetic are checked."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vokenizer.py"


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("vokenizer_benchmark") / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stdout = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--output", str(out)],
                            capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    return json.loads(out.read_text()), stdout


def test_the_ivf_sweep_reports_recall_and_speedup_and_chooses_the_smallest_nprobe_reaching_the_goal(report):
    results, stdout = report
    part = results["retrieval"]
    assert part["keys"] == 4000 and part["dim"] == 64 and part["speed_goal"] == 10 and part["recall_goal"] == 0.99
    assert set(part["key_sets"]) == {"clustered", "uniform"}
    for kind, row in part["key_sets"].items():
        assert row["nlist"] == min(int(4 * math.sqrt(4000)), 4000 // 39)
        assert [r["nprobe"] for r in row["sweep"]] == [1, 2, 4, 8, 16, 32, 64]
        for r in row["sweep"]:
            assert 0 <= r["recall_at_1"] <= 1 and positive(r["seconds"])
            assert r["speedup"] == pytest.approx(row["exact_seconds"] / r["seconds"])
        # Probing every list is exact search.
        assert row["sweep"][-1]["recall_at_1"] == 1.0 or row["nlist"] > 64
        reaching = [r for r in row["sweep"] if r["recall_at_1"] >= 0.99]
        assert row["chosen"] == (reaching[0] if reaching else None)
        assert row["goal_met"] == bool(reaching and reaching[0]["speedup"] >= 10)
        if reaching:
            assert (f"{kind:9s} keys: IVF nlist {row['nlist']} nprobe {reaching[0]['nprobe']}: "
                    f"{reaching[0]['speedup']:.1f}× faster than exact") in stdout
    assert "1. faiss IVF vs exact inner-product search" in stdout


def test_end_to_end_vokenizing_is_compared_with_the_bert_forward_on_the_same_tokens(report):
    results, stdout = report
    part = results["end_to_end"]
    assert part["bert"] == "tiny" and part["sentences"] == 8 and part["keys"] == 4000
    assert set(part["seconds"]) == {"bert_forward", "vokenize_exact", "vokenize_ivf"}
    assert part["tokens"] > 8 * 10 and part["tokens_per_sentence"] == pytest.approx(part["tokens"] / 8)
    for name, seconds in part["seconds"].items():
        assert positive(seconds)
        assert part["tokens_per_second"][name] == pytest.approx(part["tokens"] / seconds)
    for name in ("exact", "ivf"):
        assert part["ratio"][name] == pytest.approx(part["seconds"][f"vokenize_{name}"] / part["seconds"]["bert_forward"])
    assert part["nprobe"] == results["retrieval"]["key_sets"]["clustered"]["chosen"]["nprobe"]
    assert 0 <= part["ivf_voken_agreement"] <= 1
    assert f"vokenize / BERT forward time: exact {part['ratio']['exact']:.3f}, IVF {part['ratio']['ivf']:.3f}" in stdout
