"""The benchmark command keeps working and its speed never changes answers. No timing is
asserted here (figures belong to `scripts/benchmark`, whose numbers vary with the machine)."""
import json
import subprocess
import sys

from tests.conftest import REPO


def test_the_warm_benchmark_runs_and_ours_answers_what_naive_answers(tmp_path):
    # given the benchmark at its smallest size
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "warm", "--reps", "2", "--cold-runs", "1",
         "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    # when it has run: a table printed, the JSON and the plot written
    assert result.returncode == 0, result.stderr[-3000:]
    assert "request / bare forward" in result.stdout and (tmp_path / "warm.png").stat().st_size
    report = json.loads((tmp_path / "warm.json").read_text())
    # then every figure the issue asks for is there, and speed did not change the answers
    for cpus, row in report["by_cpus"].items():
        assert row["ours"]["backend"] == "onnxruntime"
        assert row["max_abs_output_difference"] <= 1e-4
        assert set(row["ours"]["handler"]) == {"png", "jpeg", "dicom"}
        assert set(row["ours"]["cold"]) >= {"import_ms", "load_ms", "first_inference_ms"}
        assert row["ratios"]["forward_speedup_vs_naive"] > 0 and row["floor_ms"] > 0
        assert row["lambda"]["memory_mb"] == 1769 * int(cpus)
