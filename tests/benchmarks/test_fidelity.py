"""`scripts/benchmark fidelity` and `decode-memory` keep working: a table printed and the JSON
written with every figure the README's tables quote. No figure is asserted beyond its sense."""
import json
import subprocess
import sys

import pytest

from tests.support.fixtures import REPO

pytestmark = pytest.mark.benchmark


def test_the_fidelity_benchmark_measures_each_level_of_a_file(tmp_path):
    # given the benchmark on one file: the shared lossy RG1 chest
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "fidelity", "--fidelity-files", "rg1 j2k lossy",
         "--fidelity-reps", "1", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    # when it has run: the table printed and the JSON written
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PIL's bilinear resize" in result.stdout
    report = json.loads((tmp_path / "fidelity.json").read_text())
    # then levels 1 to 3 were measured, each with input and probability differences and times
    assert [row["level"] for row in report["levels"]] == [1, 2, 3]
    assert [row["decoded"] for row in report["levels"]] == [[921, 978], [461, 489], [231, 245]]
    assert [row["served"] for row in report["levels"]] == [True, True, False]
    for row in report["levels"]:
        assert 0 < row["input_mean_pct"] <= row["input_max_pct"] < 100
        assert 0 <= row["max_probability_diff"] < 1 and row["reduced_ms"] > 0
    assert report["resamplers"][0]["size"] == [1841, 1955]


def test_the_decode_memory_benchmark_measures_the_30_mb_dicom(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "decode-memory", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "decode_memory.json").read_text())
    large = report["files"][0]
    assert large["pixel_bytes"] == 3900 * 3900 * 2 and large["file_bytes"] > 30e6
    # the float32 answer alone is twice the 16-bit pixels: any honest peak is above that
    assert large["tracemalloc_peak"] >= 2 * large["pixel_bytes"]
