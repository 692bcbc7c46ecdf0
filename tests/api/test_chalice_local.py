"""`chalice local` for real, started the way the README says (scripts/serve), driven by the
README's own curl lines, and stopped by its PID."""
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.support.fixtures import DCM_J2K, PNG_CARDIOMEGALY, REPO, jpeg_of
from tests.support.serving import chalice_local, local_server, serving

pytestmark = pytest.mark.server


def readme_curl_lines() -> list:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- curl-examples: start -->")[1].split("<!-- curl-examples: end -->")[0]
    return [line for line in block.splitlines() if line.startswith("curl ")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with local_server(tmp_path_factory.mktemp("chalice-local") / "chalice-local.log") as (
            base, pid):
        yield int(base.rsplit(":", 1)[1]), pid


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curl")
    shutil.copy(PNG_CARDIOMEGALY, folder / "chest.png")
    (folder / "chest.jpg").write_bytes(jpeg_of(PNG_CARDIOMEGALY))
    shutil.copy(DCM_J2K, folder / "chest.dcm")
    return folder


def run_curl(line: str, port: int, cwd) -> dict:
    command = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_readme_curl_lines_classify_the_samples(server, sample_files, demo_store):
    port, _ = server
    lines = readme_curl_lines()
    posts = [line for line in lines if "POST" in line]
    assert len(posts) == 4 and {"image/png", "image/jpeg", "application/dicom"} <= {
        re.search(r"Content-Type: ([^']+)", line).group(1) for line in posts}
    with serving(demo_store) as client:  # the same code in-process, for comparison
        for line in posts:
            answer = run_curl(line, port, sample_files)
            file_name = re.search(r"@(\S+)", line).group(1)
            content_type = re.search(r"Content-Type: ([^']+)", line).group(1)
            direct = json.loads(client.http.post(
                "/xray", headers={"Content-Type": content_type},
                body=(sample_files / file_name).read_bytes()).body)
            # another process: BLAS and onnxruntime thread counts may differ, and with them the
            # last bits of a sum; six decimals can round either way
            served = {f["label"]: f["probability"] for f in answer["findings"]}
            expected = {f["label"]: f["probability"] for f in direct["findings"]}
            assert served.keys() == expected.keys(), line
            assert max(abs(served[k] - expected[k]) for k in served) <= 1e-5, line
            assert answer["model"]["trained"] is False and "warning" in answer["model"]

    health, manifest = (run_curl(line, port, sample_files) for line in lines if "POST" not in line)
    assert health["ready"] is True and health["model"]["state"] == "ready"
    assert len(manifest["labels"]) == 18


def test_curl_mistakes_get_advice_not_a_traceback(server, sample_files):
    port, _ = server
    answer = run_curl("curl -s -X POST http://127.0.0.1:8000/xray --data-binary @chest.png",
                      port, sample_files)
    assert answer["Code"] == "UnsupportedImageType" and "Content-Type" in answer["Message"]
    answer = run_curl("curl -s -X POST http://127.0.0.1:8000/xray -H 'Content-Type: image/png' "
                      "--data-binary @chest.jpg", port, sample_files)
    assert answer["Code"] == "UnsupportedImageType" and "image/jpeg" in answer["Message"]


def fetch(url: str, body: bytes = b"", content_type: str = "") -> tuple:
    """(status, JSON answer) of a GET, or a POST when there is a body."""
    request = urllib.request.Request(url, data=body or None, method="POST" if body else "GET",
                                     headers={"Content-Type": content_type} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_given_plain_chalice_local_then_the_dev_stage_serves_the_demo_model_as_scripts_serve(
        server, tmp_path):
    # Chalice's default stage is dev, whose environment names the EFS mount (/mnt/xray):
    # off Lambda its XRAY_LOCAL_EFS_ROOT (efs-local/, the demo store) is read instead.
    port, _ = server
    body = PNG_CARDIOMEGALY.read_bytes()
    with chalice_local(tmp_path / "dev.log") as (base, _):
        status, health = fetch(f"{base}/health")
        assert status == 200 and health["live"] is True
        status, answer = fetch(f"{base}/xray", body, "image/png")
        assert status == 200, answer
        _, health = fetch(f"{base}/health")
    _, served = fetch(f"http://127.0.0.1:{port}/xray", body, "image/png")
    assert health["ready"] is True and health["model"]["path"].endswith("efs-local/models/current")
    assert answer["model"] == served["model"] and answer["model"]["trained"] is False
    assert [f["label"] for f in answer["findings"]] == [f["label"] for f in served["findings"]]
    assert max(abs(a["probability"] - b["probability"])
               for a, b in zip(answer["findings"], served["findings"])) <= 1e-5


def test_given_chalice_local_on_prod_then_health_and_the_503_say_what_was_looked_for(tmp_path):
    with chalice_local(tmp_path / "prod.log", "--stage", "prod") as (base, _):
        status, answer = fetch(f"{base}/xray", PNG_CARDIOMEGALY.read_bytes(), "image/png")
        _, health = fetch(f"{base}/health")
    assert status == 503 and answer["Code"] == "ModelUnavailable"
    for said in (answer["Message"], health["model"]["error"]):
        assert "/mnt/xray/models/current" in said and "only on Lambda" in said
        assert "`chalice local`" in said and "scripts/serve" in said
    assert health["live"] is True and health["ready"] is False
    assert health["model"]["state"] == "failed"


def test_given_plain_chalice_local_with_no_aws_then_a_job_is_a_503_that_says_what_to_run(
        tmp_path):
    """The dev stage names a jobs bucket (a placeholder until the user fills it in): under plain
    `chalice local` with no AWS credentials a job cannot be made, and the answer says so as a
    JSON 503 that points to scripts/serve, never a 500."""
    body = json.dumps({"content_type": "image/png", "size": 1000}).encode()
    no_aws = {"AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null",
              "AWS_EC2_METADATA_DISABLED": "true"}
    clean = {name: "" for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                   "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    with chalice_local(tmp_path / "dev.log", **no_aws, **clean) as (base, _):
        status, answer = fetch(f"{base}/xray/jobs", body, "application/json")
    with chalice_local(tmp_path / "profile.log", **no_aws, **clean,
                       AWS_PROFILE="no-such-profile") as (base, _):
        profile_status, profile_answer = fetch(f"{base}/xray/jobs", body, "application/json")
    assert status == 503 and answer["Code"] == "JobsUnavailable", answer
    assert "REPLACE_WITH_YOUR_JOBS_BUCKET" in answer["Message"]
    assert "NoCredentialsError" in answer["Message"] and "scripts/serve" in answer["Message"]
    assert profile_status == 503 and profile_answer["Code"] == "JobsUnavailable", profile_answer
    assert "ProfileNotFound" in profile_answer["Message"]
