"""`python -m client batch` against a loopback stand-in of the jobs contract (fake_api.py):
what it sends, what it writes, how it resumes, retries and reports. The real stack:
test_e2e.py."""
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from client.cli import main
from client.results import LOCK_NAME, Busy, Results
from tests.client.fake_api import CREDENTIALS, REGION, fake_api, fake_result
from tests.support.fixtures import REPO

DICOM_HEAD = b"\0" * 128 + b"DICM"


def make_folder(root: Path) -> Dict[str, bytes]:
    """Images of every kind the command sends (fake bytes: the stand-in classifies anything),
    and files it must skip. The relative names of the images, with their bytes."""
    images = {"a.png": b"\x89PNG first", "sub/b.JPG": b"\xff\xd8\xff second",
              "sub/deeper/c.jpeg": b"\xff\xd8\xff third", "d.dcm": DICOM_HEAD + b"fourth",
              "IM000005": DICOM_HEAD + b"fifth",                      # no extension
              "1.2.840.113619.2.55.3.6": DICOM_HEAD + b"sixth"}       # a UID as the name
    others = {"notes.txt": b"not an image", "README": b"no magic", ".hidden.png": b"\x89PNG",
              ".thumbs/x.png": b"\x89PNG in a hidden folder"}
    for name, data in {**images, **others}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return images


def run(folder: Path, url: str, *extra: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["batch", str(folder), "--api", url, "--no-progress", *extra], out, err)
    return code, out.getvalue(), err.getvalue()


def lines_of(out: Path) -> List[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def summary_of(out: Path) -> List[dict]:
    with open(out / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_every_image_is_sent_and_recorded(tmp_path):
    images = make_folder(tmp_path)
    with fake_api() as api:
        code, stdout, stderr = run(tmp_path, api.url)
    assert code == 0, stderr
    assert api.problems == []
    out = tmp_path / "xray-results"
    lines = lines_of(out)
    assert [line["file"] for line in lines] == sorted(images)
    for line in lines:
        data = images[line["file"]]
        assert line["sha256"] == hashlib.sha256(data).hexdigest()
        assert line["size"] == len(data)
        assert line["status"] == "succeeded"
        assert line["result"] == fake_result(data)
        assert line["status_url"].endswith(f"/xray/jobs/{line['job_id']}")
        assert "error" not in line
    assert sorted(api.uploads) == sorted(images.values())
    assert sorted(api.creates) == sorted(
        ({"a.png": "image/png", "sub/b.JPG": "image/jpeg", "sub/deeper/c.jpeg": "image/jpeg"}
         .get(name, "application/dicom"), len(data)) for name, data in images.items())
    rows = summary_of(out)
    assert [row["file"] for row in rows] == sorted(images)
    for row in rows:
        result = fake_result(images[row["file"]])
        assert row == {"file": row["file"], "status": "succeeded", "top_finding": "Nodule",
                       "top_probability": str(result["findings"][0]["probability"]),
                       "positives": "Nodule", "model": "fake-model", "model_version": "7",
                       "error": "", "stow": ""}
    # stdout: the counts and where the results are, no finding
    assert stdout.count("\n") == 1
    assert "6 images: 6 succeeded (0 already done, 6 sent), 0 failed" in stdout
    # notes.txt, README and .hidden.png; the hidden folder is not entered
    assert "3 other files skipped" in stdout
    assert str(out / "results.jsonl") in stdout and str(out / "summary.csv") in stdout
    assert "Nodule" not in stdout + stderr


def test_a_rerun_sends_nothing_and_keeps_every_line(tmp_path):
    make_folder(tmp_path)
    with fake_api() as api:
        assert run(tmp_path, api.url)[0] == 0
        before = (tmp_path / "xray-results" / "results.jsonl").read_text()
        creates, polls = len(api.creates), api.polls
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0
    assert (len(api.creates), api.polls) == (creates, polls)   # not even a status read
    assert (tmp_path / "xray-results" / "results.jsonl").read_text() == before
    assert "6 succeeded (6 already done, 0 sent)" in stdout


def test_a_renamed_or_copied_file_is_not_resent(tmp_path):
    images = make_folder(tmp_path)
    with fake_api() as api:
        run(tmp_path, api.url)
        first = {line["file"]: line for line in lines_of(tmp_path / "xray-results")}
        os.rename(tmp_path / "a.png", tmp_path / "renamed.png")
        (tmp_path / "sub" / "copy.dcm").write_bytes(images["d.dcm"])
        creates = len(api.creates)
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.creates) == creates
    lines = {line["file"]: line for line in lines_of(tmp_path / "xray-results")}
    # the new names get the earlier answers; the old name's line is kept
    assert lines["renamed.png"] == {**first["a.png"], "file": "renamed.png"}
    assert lines["sub/copy.dcm"] == {**first["d.dcm"], "file": "sub/copy.dcm"}
    assert lines["a.png"] == first["a.png"]
    assert "7 images: 7 succeeded (7 already done, 0 sent)" in stdout


def test_identical_files_of_one_run_are_sent_once(tmp_path):
    for name in ("one.png", "two.png", "nested/three.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x89PNG same bytes")
    with fake_api() as api:
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.uploads) == 1
    lines = lines_of(tmp_path / "xray-results")
    assert len(lines) == 3 and len({line["job_id"] for line in lines}) == 1
    assert "3 succeeded (0 already done, 1 sent)" in stdout


def test_failures_are_recorded_the_batch_goes_on_and_a_rerun_retries_only_them(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "corrupt.png").write_bytes(b"BAD png")
    (tmp_path / "huge.dcm").write_bytes(DICOM_HEAD + b"x" * 20_000)
    with fake_api() as api:
        code, stdout, stderr = run(tmp_path, api.url)
        assert code == 1
        lines = {line["file"]: line for line in lines_of(tmp_path / "xray-results")}
        # the job failed with the decoder's code; the API refused the size (413) at creation
        assert lines["corrupt.png"]["status"] == "failed"
        assert lines["corrupt.png"]["error"] == {"Code": "InvalidImage",
                                                 "Message": "truncated PNG"}
        assert lines["huge.dcm"]["status"] == "failed" and lines["huge.dcm"]["job_id"] is None
        assert lines["huge.dcm"]["error"] == {"Code": "PayloadTooLarge",
                                              "Message": "a job takes at most 10000"}
        assert "result" not in lines["huge.dcm"]
        assert sum(line["status"] == "succeeded" for line in lines.values()) == 6
        assert "8 images: 6 succeeded (0 already done, 7 sent), 2 failed" in stdout
        assert "corrupt.png: failed: InvalidImage" in stderr
        assert "huge.dcm: failed: PayloadTooLarge" in stderr
        rows = {row["file"]: row for row in summary_of(tmp_path / "xray-results")}
        assert rows["huge.dcm"]["error"] == "PayloadTooLarge"
        assert rows["huge.dcm"]["top_finding"] == ""

        # the stage now takes both: only the two failures are sent again
        api.max_bytes = 100_000
        api.classify = lambda data: ("succeeded", {"result": fake_result(data)})
        creates = len(api.creates)
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.creates) == creates + 2
    lines = lines_of(tmp_path / "xray-results")
    assert len(lines) == 8 and all(line["status"] == "succeeded" for line in lines)
    assert "8 succeeded (6 already done, 2 sent), 0 failed" in stdout


def test_network_errors_and_5xx_are_retried(tmp_path):
    images = make_folder(tmp_path)
    with fake_api(drops={"create": 2, "upload": 2, "poll": 2},
                  unavailable={"create": 2, "upload": 1, "poll": 2}) as api:
        code, _, stderr = run(tmp_path, api.url, "--parallel", "2")
        assert api.drops == {"create": 0, "upload": 0, "poll": 0}       # all were met
        assert api.unavailable == {"create": 0, "upload": 0, "poll": 0}
    assert code == 0, stderr
    assert sorted(api.uploads) == sorted(images.values())
    assert len(api.creates) == len(images)   # a refused create made no job


def test_a_network_that_stays_down_fails_the_file_not_the_batch(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    (tmp_path / "b.png").write_bytes(b"\x89PNG b")
    with fake_api(drops={"upload": 3}) as api:
        code, stdout, stderr = run(tmp_path, api.url, "--retries", "2", "--parallel", "1")
    assert code == 1
    lines = {line["file"]: line for line in lines_of(tmp_path / "xray-results")}
    assert lines["a.png"]["status"] == "failed"
    assert lines["a.png"]["error"]["Code"] == "NetworkError"
    assert lines["b.png"]["status"] == "succeeded"
    assert "1 failed" in stdout


def test_a_job_still_running_at_the_timeout_is_polled_not_resent_by_the_rerun(tmp_path):
    (tmp_path / "slow.dcm").write_bytes(DICOM_HEAD + b"slow")
    with fake_api(finishing=False) as api:
        code, stdout, stderr = run(tmp_path, api.url, "--timeout", "0.5")
        assert code == 1
        [line] = lines_of(tmp_path / "xray-results")
        assert line["status"] == "timeout" and line["job_id"] in api.jobs
        assert line["error"]["Code"] == "StillRunning"
        assert "1 still running (a re-run polls them)" in stdout
        assert "slow.dcm: timeout: StillRunning" in stderr

        api.finishing = True
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.creates) == 1 and len(api.uploads) == 1
    [again] = lines_of(tmp_path / "xray-results")
    assert again["status"] == "succeeded" and again["job_id"] == line["job_id"]
    assert "1 succeeded (0 already done, 0 sent)" in stdout


def test_a_timed_out_job_that_is_gone_is_sent_again(tmp_path):
    (tmp_path / "slow.png").write_bytes(b"\x89PNG slow")
    with fake_api(finishing=False) as api:
        run(tmp_path, api.url, "--timeout", "0.5")
        api.jobs.clear()            # expired or deleted meanwhile: 404
        api.finishing = True
        code, _, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.creates) == 2
    [line] = lines_of(tmp_path / "xray-results")
    assert line["status"] == "succeeded"


def test_a_torn_last_line_of_an_interrupted_run_is_survived(tmp_path):
    images = make_folder(tmp_path)
    with fake_api() as api:
        run(tmp_path, api.url)
        results = tmp_path / "xray-results" / "results.jsonl"
        text = results.read_text().splitlines(keepends=True)
        torn = text[-1][:40]                    # killed while writing the last line
        results.write_text("".join(text[:-1]) + torn)
        creates = len(api.creates)
        code, _, stderr = run(tmp_path, api.url)
    assert code == 0 and len(api.creates) == creates + 1   # only the torn line's file
    assert "1 unreadable line(s) ignored" in stderr
    lines = lines_of(tmp_path / "xray-results")
    assert sorted(line["file"] for line in lines) == sorted(images)


def test_a_changed_file_is_sent_again_and_its_new_line_replaces_the_old(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG before")
    with fake_api() as api:
        run(tmp_path, api.url)
        (tmp_path / "a.png").write_bytes(b"\x89PNG after, longer")
        run(tmp_path, api.url)
    assert len(api.creates) == 2
    [line] = lines_of(tmp_path / "xray-results")
    assert line["sha256"] == hashlib.sha256(b"\x89PNG after, longer").hexdigest()
    assert line["result"] == fake_result(b"\x89PNG after, longer")


def test_out_elsewhere(tmp_path):
    folder, out = tmp_path / "images", tmp_path / "elsewhere" / "results"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG a")
    with fake_api() as api:
        code, stdout, _ = run(folder, api.url, "--out", str(out))
    assert code == 0 and [line["file"] for line in lines_of(out)] == ["a.png"]
    assert not (folder / "xray-results").exists()


def test_the_upload_is_a_form_s3_takes_and_carries_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_API_KEY", "key-123")
    (tmp_path / "big.dcm").write_bytes(DICOM_HEAD + os.urandom(3 * 1024 * 1024))
    with fake_api(api_key="key-123", max_bytes=10 * 1024 * 1024) as api:
        code, _, stderr = run(tmp_path, api.url, "--auth", "api_key")
    assert code == 0, stderr
    assert api.problems == []                     # file last, every field, Content-Length
    [headers] = api.upload_headers
    assert int(headers["content-length"]) > 3 * 1024 * 1024
    assert not {"x-api-key", "authorization", "x-amz-date"} & set(headers)


@pytest.mark.parametrize("mode", ["api_key", "cognito", "iam", "iam+api_key",
                                  "cognito+api_key"])
def test_each_auth_mode_authenticates_every_api_call(tmp_path, monkeypatch, mode):
    for name, value in {**CREDENTIALS, "AWS_CONFIG_FILE": "/dev/null",
                        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                        "XRAY_API_KEY": "key-from-env", "XRAY_ID_TOKEN": "eyJ.token.sig"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    (tmp_path / "b.dcm").write_bytes(DICOM_HEAD + b"b")
    required = {"api_key": "key-from-env" if "api_key" in mode else None,
                "id_token": "eyJ.token.sig" if "cognito" in mode else None,
                "iam": "iam" in mode}
    with fake_api(**required) as api:
        code, _, stderr = run(tmp_path, api.url, "--auth", mode, "--region", REGION)
        assert code == 0, stderr
        # and without it, every call is refused: each file fails with API Gateway's answer
        with fake_api(**required) as strict:
            code, _, stderr = run(tmp_path, strict.url, "--out", str(tmp_path / "open"))
    assert code == 1 and not strict.creates
    assert "failed: HTTP403" in stderr
    assert len(api.api_headers) >= 6            # two creates, at least two polls each


def test_flags_take_precedence_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_API_KEY", "from-env")
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    with fake_api(api_key="from-flag") as api:
        code, _, _ = run(tmp_path, api.url, "--auth", "api_key", "--api-key", "from-flag")
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["--auth", "api_key"], "--auth api_key needs the stage's API key"),
    (["--auth", "cognito"], "--auth cognito needs an id token"),
    (["--auth", "iam"], "add --region"),
    (["--parallel", "0"], "--parallel must be at least 1"),
])
def test_usage_errors_exit_2_and_send_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("XRAY_API_KEY", raising=False)
    monkeypatch.delenv("XRAY_ID_TOKEN", raising=False)
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    with fake_api() as api:
        code, stdout, stderr = run(tmp_path, api.url, *args)
    assert (code, stdout) == (2, "") and message in stderr
    assert api.api_headers == [] and not (tmp_path / "xray-results").exists()


def test_iam_without_credentials_is_a_usage_error(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    code, _, stderr = run(tmp_path, "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
                          "--auth", "iam")
    assert code == 2 and "found no AWS credentials" in stderr
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    code, _, stderr = run(tmp_path, "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
                          "--auth", "iam")
    assert code == 2 and "no-such-profile" in stderr


def test_the_command_line_entry_point(tmp_path):
    """`python -m client` itself: argparse's usage errors and ours exit 2, a batch 0."""
    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "client", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert command("batch", str(tmp_path)).returncode == 2              # no --api
    assert command("batch", str(tmp_path / "missing"), "--api",
                   "http://127.0.0.1:9").returncode == 2
    bad_url = command("batch", str(tmp_path), "--api", "127.0.0.1:8000")
    assert bad_url.returncode == 2 and "--api must be the API's base URL" in bad_url.stderr
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    with fake_api() as api:
        done = command("batch", str(tmp_path), "--api", api.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 image: 1 succeeded")


def test_one_batch_per_results_folder(tmp_path):
    with Results(tmp_path / "out"):
        with pytest.raises(Busy):
            with Results(tmp_path / "out"):
                pass
    assert (tmp_path / "out" / LOCK_NAME).exists()
    with Results(tmp_path / "out"):   # released
        pass


def test_ctrl_c_keeps_what_was_learnt_and_the_rerun_polls_instead_of_resending(tmp_path):
    """SIGINT while a job runs: exit 130, the job's line says timeout (with its id), files not
    started have no line, and the next run polls that job rather than uploading it again."""
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"\x89PNG " + name.encode())
    with fake_api(finishing=False) as api:
        process = subprocess.Popen(
            [sys.executable, "-m", "client", "batch", str(tmp_path), "--api", api.url,
             "--parallel", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            give_up = time.monotonic() + 120        # not an assertion: a hung child ends
            while api.polls < 2 and process.poll() is None and time.monotonic() < give_up:
                time.sleep(0.05)                    # a.png is uploaded and running
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130, stderr
        assert "1 still running (a re-run polls them)" in stdout
        assert "not started (interrupted)" in stdout
        [line] = lines_of(tmp_path / "xray-results")
        assert (line["file"], line["status"]) == ("a.png", "timeout")

        api.finishing = True
        code, stdout, _ = run(tmp_path, api.url)
    assert code == 0 and len(api.uploads) == 3          # a.png was not uploaded twice
    assert "3 succeeded (0 already done, 2 sent)" in stdout


def test_answers_of_another_api_are_kept_but_not_reused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG a")
    with fake_api() as dev, fake_api() as prod:
        run(tmp_path, dev.url)
        [from_dev] = lines_of(tmp_path / "xray-results")
        assert from_dev["api"] == dev.url
        code, stdout, _ = run(tmp_path, prod.url)
    assert code == 0 and len(prod.creates) == 1          # another stage answers afresh
    [line] = lines_of(tmp_path / "xray-results")
    assert line["api"] == prod.url and line["job_id"] != from_dev["job_id"]
