"""No patient or study field leaves the function: a DICOM whose patient name, ID, birth date,
accession number, institution, referring physician and study fields hold marker strings goes
through every route, as is and in malformed variants that make pydicom warn or fail, in a fresh
interpreter running the real Lambda entry point. No marker may appear on stdout (log lines and
EMF), on stderr, in any log record, in a warning's line, in an answer or an error message; and
every EMF line follows the EMF specification. STOW-RS (POST /studies) takes each variant as the
part of a multipart/related body, and all of them in one body. The job routes go through it
too, with a moto server as the jobs bucket: their bodies (notify addresses among them) and the
job ids in their paths hold markers, which must not be logged either; nor may a study UID in
a STOW-RS path."""
import base64
import io
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from pydicom.uid import ImplicitVRLittleEndian, JPEGLSLossless

from tests.support.dicom_factory import make_dicom
from tests.support.emf import check_emf, split_lines
from tests.support.fixtures import REPO
from tests.support.jobs import local_jobs
from tests.support.stow import CONTENT_TYPE as STOW_TYPE
from tests.support.stow import body_of as stow_body

PREFIX = "PHIMARK"  # in every marker, so that a fragment of one is found too
PATIENT_AND_STUDY = {
    "PatientName": "PHIMARKNAME^Jane",
    "PatientID": "PHIMARKID0001",
    "PatientBirthDate": "PHIMARKBIRTH",
    "AccessionNumber": "PHIMARKACCN1",
    "InstitutionName": "PHIMARK Institution",
    "ReferringPhysicianName": "PHIMARKREF^Doc",
    "StudyID": "PHIMARKSTUDY",
    "StudyDescription": "PHIMARK study description",
}
# values pydicom quotes when it warns or fails on a malformed element (not patient fields, but
# header values all the same): they must not get out either
QUOTED = {"NumberOfFrames": "PHIMARKF", "WindowCenter": "PHIMARKW"}
IAM_ARN = "arn:aws:iam::123456789012:user/radiologist"


def marked(pixels=None, **attributes) -> bytes:
    if pixels is None:
        pixels = (np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) * 7) % 4096
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the marker birth date as it writes
        return make_dicom(pixels, bits_stored=12, **{**PATIENT_AND_STUDY, **attributes})


def quoted(attribute: str, placeholder: str) -> bytes:
    """A marked DICOM whose `attribute` holds QUOTED[attribute] (same length as placeholder)."""
    body = marked(**{attribute: placeholder, "WindowWidth": "400"})
    return body.replace(placeholder.encode(), QUOTED[attribute].encode())


def split(body: bytes) -> tuple:
    """(preamble + file meta, dataset) of a Part 10 file."""
    import pydicom.filereader
    stream = io.BytesIO(body)
    pydicom.filereader.read_preamble(stream, False)
    pydicom.filereader._read_file_meta_info(stream)
    return body[:stream.tell()], body[stream.tell():]


def variants() -> dict:
    """name -> (body, content type, the status /xray and /preview must answer)."""
    valid = marked()
    explicit_meta, _ = split(valid)
    _, implicit_dataset = split(marked(transfer_syntax=ImplicitVRLittleEndian))
    cut = valid.index(b"PHIMARK Institution") + 8
    return {
        "valid": (valid, "application/dicom", 200),
        "valid-as-octet-stream": (valid, "application/octet-stream", 200),
        # pydicom warns "Expected explicit VR, but found implicit VR" and reads on
        "implicit-body-under-explicit-meta": (explicit_meta + implicit_dataset,
                                              "application/dicom", 200),
        # pydicom warns "Invalid value for VR IS: 'PHIMARKF'"
        "frames-not-a-number": (quoted("NumberOfFrames", "33333333"), "application/dicom", 400),
        # pydicom fails: "could not convert string to float: 'PHIMARKW'"
        "window-not-a-number": (quoted("WindowCenter", "11111111"), "application/dicom", 400),
        "truncated-pixels": (valid[:-1000], "application/dicom", 400),
        "cut-inside-the-patient-fields": (valid[:cut], "application/dicom", 422),
        "no-pixel-data": (make_dicom(None, **PATIENT_AND_STUDY), "application/dicom", 422),
        "jpeg-ls": (make_dicom(None, transfer_syntax=JPEGLSLossless, **PATIENT_AND_STUDY),
                    "application/dicom", 415),
        "declared-png": (valid, "image/png", 415),
        "no-preamble": (valid[132:], "application/dicom", 415),
        "too-many-pixels": (marked(np.zeros((64, 64), np.uint16), Rows=65535, Columns=65535),
                            "application/dicom", 413),
    }


def cases() -> tuple:
    """(cases for lambda_process, {case name: expected status})."""
    found, expected = [], {}
    caller = {"identity": {"userArn": IAM_ARN, "apiKeyId": "k1a2b3"}}

    def add(name, method, path, body, content_type="", status=200, **extra):
        found.append({"name": name, "method": method, "path": path,
                      "body_b64": base64.b64encode(body).decode(), "content_type": content_type,
                      **caller, **extra})
        expected[name] = status

    for variant, (body, content_type, status) in variants().items():
        add(f"xray {variant}", "POST", "/xray", body, content_type, status)
        add(f"heatmap {variant}", "POST", "/xray", body, content_type, status,
            query={"heatmap": "top"})
        add(f"preview {variant}", "POST", "/preview", body, content_type,
            # the preview never loads the model nor checks the smallest side
            status)
        # STOW-RS: the variant as the one part of a multipart/related body; a part is taken
        # only as application/dicom, and a request whose one instance fails is a 409
        add(f"stow {variant}", "POST", "/studies", stow_body([(content_type, body)]),
            STOW_TYPE, 200 if status == 200 and content_type == "application/dicom" else 409)
    body = variants()["valid"][0]
    add("stow all variants", "POST", "/studies",
        stow_body([(kind, data) for data, kind, _ in variants().values()]), STOW_TYPE, 202)
    study = PREFIX + "STUDYPATH"  # a study path parameter is a study field: never logged
    add("stow to a study", "POST", f"/studies/{study}", stow_body([("application/dicom", body)]),
        STOW_TYPE, 409, resource="/studies/{study}", path_parameters={"study": study})
    add("cognito xray", "POST", "/xray", body, "application/dicom", 200,
        authorizer={"claims": {"sub": "6f1c1d2e-8a3b-4c5d-9e0f-123456789abc"}})
    for method, path, status, headers in [
            ("GET", "/health", 200, {}), ("GET", "/model", 200, {}), ("GET", "/", 200, {}),
            ("OPTIONS", "/xray", 204, {}), ("OPTIONS", "/preview", 204, {}),
            ("OPTIONS", "/xray", 403, {"Origin": "https://elsewhere.example"}),
            ("GET", "/xray", 405, {})]:
        # the body rides along; with its Content-Type, Chalice would refuse these routes (415:
        # they take JSON), which the variants above already cover
        add(f"{method} {path} {status}", method, path, body, "", status, headers=headers)
    job_id = (PREFIX + "JOBID").ljust(32, "x")  # a well-formed id nobody was given
    json_body = {"content_type": "application/dicom", "size": 7200342,
                 "notify": {"email": "phimark.jane@example.org",
                            "webhook": "https://hooks.example.org/PHIMARK/xray"}}
    for name, body, status in [
            ("job create", json_body, 202),
            ("job create bad email", {**json_body, "notify": {"email": "PHIMARK Jane <j@x>"}},
             400),
            ("job create bad webhook", {**json_body, "notify": {"webhook": "ftp://PHIMARK"}},
             400),
            ("job create type", {**json_body, "content_type": "text/plain"}, 415),
            ("job create unknown field", {**json_body, "patient": "PHIMARKNAME"}, 400)]:
        add(name, "POST", "/xray/jobs", json.dumps(body).encode(), "application/json", status)
    add("job create not json", "POST", "/xray/jobs", b'{"notify": {"email": "PHIMARK',
        "application/json", 400)
    for method, status in (("GET", 404), ("DELETE", 404), ("OPTIONS", 204)):
        add(f"job {method} {status}", method, f"/xray/jobs/{job_id}", b"", "", status,
            resource="/xray/jobs/{job_id}", path_parameters={"job_id": job_id})
    return found, expected


@pytest.fixture(scope="module")
def run(demo_store, tmp_path_factory):
    """One fresh interpreter through every case: (process, output, expected statuses)."""
    work = tmp_path_factory.mktemp("phi")
    found, expected = cases()
    (work / "cases.json").write_text(json.dumps(found))
    env = {name: value for name, value in __import__("os").environ.items()
           if not name.startswith(("XRAY_", "POWERTOOLS_"))}
    with local_jobs() as jobs:
        stage = jobs.env(XRAY_SES_SENDER="xray-jobs@example.org",
                         XRAY_WEBHOOK_SECRET_NAME="xray-webhook-secret")
        process = subprocess.run(
            [sys.executable, "-m", "tests.support.lambda_process", str(work / "cases.json"),
             str(work / "out.json")], cwd=REPO, capture_output=True, text=True, timeout=600,
            env={**env, **stage, "XRAY_EFS_ROOT": str(demo_store), "XRAY_STAGE": "test"})
    assert process.returncode == 0, process.stderr[-3000:]
    return process, json.loads((work / "out.json").read_text()), expected


def test_given_marked_dicoms_through_every_route_then_each_answers_as_expected(run):
    _, output, expected = run
    assert {a["name"]: a["status"] for a in output["answers"]} == expected


def test_given_marked_dicoms_through_every_route_then_no_marker_on_any_stream(run):
    process, _, _ = run
    assert PREFIX not in process.stdout.upper()
    assert PREFIX not in process.stderr.upper()
    assert process.stderr == ""  # nothing unformatted: every line is a JSON log or EMF line


def test_given_marked_dicoms_through_every_route_then_no_marker_in_any_log_record(run):
    _, output, _ = run
    assert output["records"]  # the records were captured (request lines at least)
    leaking = [record for record in output["records"] if PREFIX in record.upper()]
    assert leaking == []


def test_given_marked_dicoms_through_every_route_then_no_marker_in_any_answer(run):
    _, output, _ = run
    for answer in output["answers"]:
        assert PREFIX not in json.dumps(answer).upper(), answer["name"]
        if answer["status"] >= 400 and answer["headers"].get("Content-Type") == \
                "application/json":
            error = json.loads(answer["body"])
            assert set(error) == {"Code", "Message"} and "Traceback" not in error["Message"]


def test_given_pydicom_warnings_on_the_request_path_then_they_became_lines_without_text(run):
    process, output, _ = run
    assert ["UserWarning", "pydicom/valuerep.py"] in [
        [category, filename.split("site-packages/")[-1]]
        for category, filename in output["warnings"]]
    _, logs = split_lines(process.stdout)
    warned = [line for line in logs if line.get("event") == "warning"]
    assert ("UserWarning", "pydicom.valuerep") in {(w["category"], w["source"]) for w in warned}
    assert all(set(w) <= {"level", "location", "message", "timestamp", "service", "event",
                          "category", "source"} for w in warned)


def test_given_every_route_then_one_request_line_each_and_one_audit_line_per_classification(
        run):
    process, output, _ = run
    emf, logs = split_lines(process.stdout)
    requests = [line for line in logs if line.get("event") == "request"]
    assert len(requests) == len(output["answers"])
    assert [line["status"] for line in requests] == [a["status"] for a in output["answers"]]
    audits = [line for line in logs if line.get("event") == "audit"]
    classifications = [a for a in output["answers"] if a["name"].startswith(
        ("xray ", "heatmap ", "cognito xray", "stow "))]
    job_accesses = [a for a in output["answers"]
                    if a["name"].startswith("job ") and "OPTIONS" not in a["name"]]
    assert len([a for a in audits if a["action"] == "classify"]) == len(classifications)
    assert len([a for a in audits if a["action"].endswith("_job")]) == len(job_accesses)
    assert {audit["principal"]["kind"] for audit in audits
            if audit["action"] == "classify"} == {"iam", "cognito"}
    # one line per STOW-RS request, however many instances it held
    stows = [a for a in audits if a.get("via") == "stow"]
    assert len(stows) == len([a for a in output["answers"] if a["name"].startswith("stow ")])
    assert {"instances": len(variants()), "classified": 2, "failure_reasons": {
        "0xC000": 6, "0x0122": 2, "0xC122": 1, "0xA700": 1}} in [a["instances"] for a in stows]


def test_given_every_route_then_every_emf_line_follows_the_specification(run):
    process, _, _ = run
    emf, _ = split_lines(process.stdout)
    assert emf
    for document in emf:
        check_emf(document)
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ChestXray"
