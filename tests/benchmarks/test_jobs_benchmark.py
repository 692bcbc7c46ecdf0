"""The jobs benchmark runs on a real scripts/serve and prints its figures. No timing is asserted
(figures belong to `scripts/benchmark`, whose numbers vary with the machine)."""
import json
import subprocess
import sys

import pytest

from tests.support.fixtures import REPO

pytestmark = pytest.mark.benchmark


def test_the_jobs_benchmark_sends_the_7mb_dicom_through_a_job_and_prints_its_parts(tmp_path):
    # given the benchmark at its smallest size: one job, cold
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "jobs", "--job-runs", "1", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    # when it has run: the table printed and the JSON written
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "upload start -> succeeded" in result.stdout and "1 (cold)" in result.stdout
    assert "POST /xray, the same file: 413 PayloadTooLarge" in result.stdout
    report = json.loads((tmp_path / "jobs.json").read_text())
    # then the job succeeded and was measured, beside the synchronous route's answers (a
    # status that came and went between two polls leaves its part None, by design)
    assert report["problems"] == [] and report["file"]["bytes"] > 6_000_000
    (run,) = report["runs"]
    assert run["status"] == "succeeded"
    assert all(run[part] > 0 for part in ("upload_ms", "classify_ms", "total_ms"))
    seen = [run[part] for part in ("upload_ms", "to_claimed_ms", "model_wait_ms", "running_ms")
            if run[part] is not None]
    assert all(part >= 0 for part in seen) and run["total_ms"] >= sum(seen) - 1
    assert report["sync"]["same_file"]["status"] == 413
    assert report["sync"]["original"]["statuses"] == [200]
    assert report["sync"]["original"]["cold_ms"] > 0
