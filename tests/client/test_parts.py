"""The batch client's parts that need no server, and its agreement with the server's tables (the
client imports nothing of chalicelib, so these tests are what keeps the two in step)."""
import io
import json
import os
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from chalicelib.imaging.formats import CONTENT_TYPES, sniff
from chalicelib.settings import AUTH_CHOICES
from client.auth import MODES, region_of
from client.batch import Batch
from client.discover import CONTENT_TYPE_OF_EXTENSION, content_type_of, discover
from client.jobs import JobsApi, MultipartFile
from client.results import Results, summary_row
from client.transport import Transport
from tests.client.fake_api import fake_api
from tests.support.fixtures import ALL_FIXTURES


def test_the_client_knows_the_servers_auth_modes_and_types():
    assert set(MODES) == set(AUTH_CHOICES)
    assert set(CONTENT_TYPE_OF_EXTENSION.values()) <= set(CONTENT_TYPES)


def test_every_shared_fixture_is_found_as_the_server_would_read_it(tmp_path):
    for fixture in ALL_FIXTURES:       # and without its extension, DICOM by its magic only
        (tmp_path / fixture.name).write_bytes(fixture.read_bytes())
        (tmp_path / fixture.stem).write_bytes(fixture.read_bytes())
    images, skipped = discover(tmp_path)
    declared = {image.relative: image.content_type for image in images}
    for fixture in ALL_FIXTURES:
        kind = sniff(fixture.read_bytes()[:132])
        assert declared[fixture.name] == {"png": "image/png", "dicom": "application/dicom"}[kind]
        if kind == "dicom":
            assert declared[fixture.stem] == "application/dicom"
        else:
            assert fixture.stem in skipped      # a PNG needs its extension


def test_the_results_folder_inside_the_folder_is_not_sent(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "xray-results").mkdir()
    (tmp_path / "xray-results" / "old.png").write_bytes(b"\x89PNG")
    images, skipped = discover(tmp_path, exclude=tmp_path / "xray-results")
    assert [image.relative for image in images] == ["a.png"] and skipped == []


def test_an_unreadable_file_is_skipped_by_its_magic_not_raised(tmp_path):
    assert content_type_of(tmp_path / "gone") is None


@pytest.mark.parametrize("url, region", [
    ("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api", "eu-west-1"),
    ("https://a1b2c3d4e5.execute-api.us-gov-west-1.amazonaws.com/api", "us-gov-west-1"),
    ("https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn/api", "cn-north-1"),
    ("https://a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.ap-southeast-2.vpce.amazonaws.com"
     "/api", "ap-southeast-2"),
    ("https://xray.example.org/v1", None),
    ("http://127.0.0.1:8000", None),
])
def test_the_region_is_read_from_the_apis_url(url, region):
    assert region_of(url) == region


def test_the_multipart_body_is_what_a_form_parser_reads_with_the_file_last(tmp_path):
    data = os.urandom(700_000)
    (tmp_path / "x.dcm").write_bytes(data)
    seen = []
    body = MultipartFile({"key": "uploads/j/image", "policy": "abc=", "Content-Type":
                          "application/dicom"}, tmp_path / "x.dcm", "application/dicom",
                         "b0undary", seen.append)
    raw = b"".join(iter(lambda: body.read(8192), b""))
    assert len(raw) == len(body) and sum(seen) == len(data)
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n" + raw)
    parts = [(part.get_param("name", header="content-disposition"),
              part.get_payload(decode=True)) for part in message.iter_parts()]
    assert parts == [("key", b"uploads/j/image"), ("policy", b"abc="),
                     ("Content-Type", b"application/dicom"), ("file", data)]
    assert b'filename="image"' in raw and b"x.dcm" not in raw   # never the file's own name


def test_summary_row_of_each_kind_of_line():
    result = {"model": {"name": "m", "version": "3"}, "positive": ["B", "A"],
              "findings": [{"label": "A", "probability": 0.2},
                           {"label": "B", "probability": 0.9}]}
    assert summary_row({"file": "x.png", "status": "succeeded", "result": result}) == \
        ("x.png", "succeeded", "B", "0.9", "B;A", "m", "3", "", "")
    assert summary_row({"file": "y.dcm", "status": "failed",
                        "error": {"Code": "InvalidImage", "Message": "..."}}) == \
        ("y.dcm", "failed", "", "", "", "", "", "InvalidImage", "")
    assert summary_row({"file": "w.dcm", "status": "succeeded", "result": result,
                        "stow": {"url": "http://pacs/studies", "status": "stored"}})[8] == \
        "stored"
    assert summary_row({"file": "z.dcm", "status": "timeout", "job_id": "j",
                        "error": {"Code": "StillRunning", "Message": "..."}})[7] == \
        "StillRunning"


def test_progress_bars_count_each_byte_once_across_upload_retries(tmp_path):
    """The bars on (a terminal's case): an upload retried after a dropped connection rewinds
    its bytes, so the bar ends at the total, not above it."""
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(os.urandom(300_000))
    err = io.StringIO()
    with fake_api(drops={"upload": 1}, max_bytes=10**6) as api, \
            Results(tmp_path / "out") as results:
        batch = Batch(JobsApi(Transport(_none_auth(), backoff_s=0.01), api.url), results,
                      tmp_path, parallel=1, progress=True, err=err)
        counts = batch.run()
    assert counts.succeeded == 2 and counts.sent == 2
    assert batch._upload_bar is not None and batch._upload_bar.n == 600_000
    assert "upload" in err.getvalue() and "jobs" in err.getvalue()
    assert [json.loads(line)["status"] for line in
            (tmp_path / "out" / "results.jsonl").read_text().splitlines()] == ["succeeded"] * 2


def _none_auth():
    from client.auth import make_auth
    return make_auth("none", "http://127.0.0.1")
