"""`python -m client batch` over the shared radiographs against the real local stack
(`scripts/serve`: chalice local, moto, the relay running app.py's job_worker), as a user runs it:
every file succeeds, results.jsonl and summary.csv hold what POST /xray answers for the same
bytes, and a re-run sends nothing (the jobs bucket gets no new job)."""
import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests

from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, REPO, dicom_over_the_sync_limit
from tests.support.serving import local_server

pytestmark = pytest.mark.server

BIG = "large/rg1_uncompressed.dcm"     # about 7 MB: over POST /xray's default limit
MOTO = re.compile(r"AWS \(moto\)\s+(http://127\.0\.0\.1:\d+)")
BUCKET = re.compile(r"jobs bucket\s+(\S+)")


def batch(folder: Path, api: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client", "batch", str(folder), "--api", api,
                           "--parallel", "3"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def jobs_in_bucket(log: Path) -> int:
    text = log.read_text()
    s3 = boto3.client("s3", endpoint_url=MOTO.search(text).group(1), region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET.search(text).group(1),
                                                         Prefix="jobs/")
    return sum(len(page.get("Contents", [])) for page in pages)


def without_timings(result: dict) -> dict:
    return {name: value for name, value in result.items() if name != "timings_ms"}


def test_a_folder_of_radiographs_through_the_local_stack(tmp_path):
    folder = tmp_path / "studies"
    files = {}
    for fixture in ALL_FIXTURES:           # copied at test time, never into the repo
        files[f"{fixture.parent.name}/{fixture.name}"] = fixture.read_bytes()
    files[BIG] = dicom_over_the_sync_limit()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "LICENSES.md").write_text("not an image")
    log = tmp_path / "serve.log"
    # the sync route's limit raised for this server only, to compare the 7 MB file's answer
    with local_server(log, XRAY_MAX_UPLOAD_BYTES=str(20 * 1024 * 1024)) as (base, _pid):
        first = batch(folder, base)
        assert first.returncode == 0, first.stderr[-3000:] + log.read_text()[-3000:]
        jobs = jobs_in_bucket(log)
        out = folder / "xray-results"
        before = (out / "results.jsonl").read_text()
        lines = {line["file"]: line for line in map(json.loads, before.splitlines())}
        assert sorted(lines) == sorted(files)
        assert jobs == len(files)
        for name, data in files.items():
            line = lines[name]
            assert line["status"] == "succeeded"
            assert line["sha256"] == hashlib.sha256(data).hexdigest()
            assert line["status_url"] == f"{base}/xray/jobs/{line['job_id']}"
            synchronous = requests.post(f"{base}/xray", data=data, timeout=120, headers={
                "Content-Type": CONTENT_TYPE[Path(name).suffix]})
            assert synchronous.status_code == 200, synchronous.text
            assert without_timings(line["result"]) == without_timings(synchronous.json())
        with open(out / "summary.csv", newline="") as file:
            rows = {row["file"]: row for row in csv.DictReader(file)}
        assert sorted(rows) == sorted(files)
        for name, row in rows.items():
            result = lines[name]["result"]
            assert row["status"] == "succeeded" and row["error"] == ""
            assert row["top_finding"] == result["findings"][0]["label"]
            assert row["positives"] == ";".join(result["positive"])
            assert (row["model"], row["model_version"]) == (result["model"]["name"],
                                                            result["model"]["version"])
        # stdout: the counts and the two paths only
        assert first.stdout.splitlines() == [
            f"{len(files)} images: {len(files)} succeeded (0 already done, {len(files)} sent), "
            f"0 failed; 1 other file skipped. Results: {out / 'results.jsonl'}, "
            f"{out / 'summary.csv'}"]

        again = batch(folder, base)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"({len(files)} already done, 0 sent)" in again.stdout
        assert jobs_in_bucket(log) == jobs
        assert (out / "results.jsonl").read_text() == before
