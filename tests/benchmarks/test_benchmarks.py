"""The benchmark command keeps working and its speed never changes answers. No timing is
asserted here (figures belong to `scripts/benchmark`, whose numbers vary with the machine)."""
import json
import subprocess
import sys

import pytest

from benchmarks.warm_worker import REQUESTS
from tests.support.fixtures import REPO

pytestmark = pytest.mark.benchmark


def test_the_warm_benchmark_runs_and_ours_answers_what_naive_and_before_answer(tmp_path):
    # given the benchmark at its smallest size, with this very commit as the "before" side
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "warm", "--reps", "2", "--cold-runs", "1",
         "--before", "HEAD", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    # when it has run: a table printed, the JSON and the plot written
    assert result.returncode == 0, result.stderr[-3000:]
    assert "request / bare forward" in result.stdout and (tmp_path / "warm.png").stat().st_size
    report = json.loads((tmp_path / "warm.json").read_text())
    # then every figure the issue asks for is there, and speed did not change the answers
    for cpus, row in report["by_cpus"].items():
        assert row["ours"]["backend"] == "onnxruntime"
        assert row["max_abs_output_difference_naive"] <= 1e-4
        assert row["max_abs_output_difference_before"] == 0.0  # the same code and weights
        for side in ("ours", "before"):
            assert set(row[side]["handler"]) == set(REQUESTS)
            assert set(row[side]["cold"]) >= {"import_ms", "load_ms", "first_inference_ms",
                                              "first_heatmap_ms"}
        assert row["ratios"]["j2k_lossless_speedup_vs_before"] > 0
        assert row["ratios"]["forward_speedup_vs_naive"] > 0 and row["floor_ms"] > 0
        assert row["lambda"]["memory_mb"] == 1769 * int(cpus)


def test_the_candidates_benchmark_measures_each_and_none_changes_the_answers(tmp_path):
    # given the forward-pass candidates at their smallest size
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "candidates", "--candidate-reps", "1",
         "--candidate-passes", "1", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    # when they have run
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "candidates.json").read_text())
    # then each was measured at 1 and 2 CPUs, and each answers what eager answers
    assert set(report["by_cpus"]) == {"1", "2"}
    for rows in report["by_cpus"].values():
        assert set(rows) == {"eager", "channels_last", "torchscript", "torchscript+onednn",
                             "torch.export", "onnxruntime"}
        for name, row in rows.items():
            assert "error" not in row, (name, row)
            assert row["p50"] > 0 and row["max_abs_difference_vs_eager"] <= 1e-4


def test_the_load_benchmark_posts_every_format_without_errors_and_loads_the_model_once(
        tmp_path):
    # given locust at its smallest size against a fresh `chalice local`
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "load", "--users", "2", "--duration", "5",
         "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    # when it has run: the table printed, the JSON and the server's log written
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model loads: 1" in result.stdout and "server peak RSS" in result.stdout
    report = json.loads((tmp_path / "load.json").read_text())
    # then each format was posted (each of its samples a real file), none failed, and the
    # server loaded the model once, as its log and /health both say
    assert list(report["by_format"]) == ["png", "jpeg", "dicom"]
    assert all(report["samples"][fmt] for fmt in report["by_format"])
    for row in (*report["by_format"].values(), report["total"]):
        assert row["requests"] > 0 and row["failures"] == 0 and row["requests_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert report["total"]["requests"] == sum(r["requests"] for r in report["by_format"].values())
    assert report["errors"] == [] and report["problems"] == []
    assert report["model"]["loads_logged"] == 1 and report["model"]["state"] == "ready"
    assert report["model"]["load_ms"] > 0 and report["server"]["peak_rss_mb"] > 0
    assert (tmp_path / "load_server.log").read_text().count("POST /xray") == \
        report["total"]["requests"]


def test_the_fault_table_runs_and_every_fault_is_a_timely_503_that_recovers(tmp_path):
    # given the fault command (every row: a broken store served by the Lambda entry point)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "faults", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    # when it has run: the table printed, the JSON written
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| fault | status | Code |" in result.stdout
    rows = json.loads((tmp_path / "faults.json").read_text())["rows"]
    from benchmarks.faults import FAULTS
    assert [row["fault"] for row in rows] == [fault.name for fault in FAULTS]
    # then each fault was a JSON 503 before its deadline, /health live but not ready with the
    # reason, and the fixed store was served without a restart
    for row in rows:
        assert row["status"] == 503 and row["code"] in ("ModelUnavailable",
                                                        "ModelStillLoading"), row
        assert row["answer_s"] < row["deadline_s"], row
        health = row["health"]
        assert health["live"] is True and health["ready"] is False, row
        assert health["state"] == ("loading" if row["code"] == "ModelStillLoading"
                                   else "failed"), row
        assert row["code"] == "ModelStillLoading" or health["reason"], row
        assert row["recovered"] is True, row
    assert json.loads((tmp_path / "faults.json").read_text())["problems"] == []


def test_the_cold_start_per_backend_shows_onnxruntime_never_touches_the_torch_tree(
        tmp_path, host_runtime):
    # given the per-backend cold start, torch from the tree the tests build for this machine
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "cold-start", "--backends-only", "--repeat", "1",
         "--stripped-tree", str(host_runtime[0]), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    # when it has run: the table printed, the JSON written
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cold start per backend" in result.stdout
    backends = json.loads((tmp_path / "cold_start.json").read_text())["by_backend"]["backends"]
    # then both answered a PNG and its heatmap; onnxruntime read the model folder and nothing
    # of the torch tree, torch read both
    ort, torch_ = backends["onnxruntime"], backends["torch"]
    assert ort["statuses"] == torch_["statuses"] == [200, 200]
    assert ort["torch_imported"] == [False, False] and torch_["torch_imported"] == [True, True]
    if "fs" in ort:  # strace is there
        assert ort["fs"]["packages"]["opens"] == ort["fs"]["packages"]["lookups"] == 0
        assert torch_["fs"]["packages"]["opens"] > 100
        assert ort["fs"]["models"]["bytes_read"] > 20_000_000
        assert any(name.endswith("model.onnx") for name in ort["fs"]["models"]["files"])
