"""An SR carries the input's patient and study fields (its job) but no log line does: a DICOM
whose patient and study fields hold markers (tests/observability/test_no_patient_data.py's),
with a single-component patient name that highdicom warns about quoting it, is sent to POST
/xray with Accept: application/dicom through the real Lambda entry point in a fresh interpreter
whose root logger takes every level (highdicom logs the instance it copies from at INFO). No
marker and none of the input's UIDs may be on stdout, stderr or in any log record; the SR has
the markers."""
import base64
import io
import json
import os
import subprocess
import sys

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.observability.test_no_patient_data import PATIENT_AND_STUDY, PREFIX, marked
from tests.support.fixtures import REPO

# lambda_process with the root logger at DEBUG: every library's record is made
RUN = ("import logging, sys; logging.getLogger().setLevel(logging.DEBUG); "
       "from tests.support.lambda_process import main; main(sys.argv[1], sys.argv[2])")
UIDS = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
SINGLE_NAME = "PHIMARKSOLO"  # no caret: highdicom warns "The string ... is unlikely ..."


def cases() -> list:
    found = []
    for name, attributes in [("sr", {}), ("sr single-component name",
                                          {"PatientName": SINGLE_NAME})]:
        body = marked(**UIDS, **attributes)
        found.append({"name": name, "method": "POST", "path": "/xray", "content_type":
                      "application/dicom", "body_b64": base64.b64encode(body).decode(),
                      "headers": {"Accept": "application/dicom"}})
    return found


@pytest.fixture(scope="module")
def run(demo_store, tmp_path_factory):
    work = tmp_path_factory.mktemp("sr-logs")
    found = cases()
    (work / "cases.json").write_text(json.dumps(found))
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("XRAY_", "POWERTOOLS_"))}
    process = subprocess.run(
        [sys.executable, "-c", RUN, str(work / "cases.json"), str(work / "out.json")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**env, "XRAY_EFS_ROOT": str(demo_store), "XRAY_STAGE": "test"})
    assert process.returncode == 0, process.stderr[-3000:]
    sop_uids = [pydicom.dcmread(io.BytesIO(base64.b64decode(case["body_b64"]))).SOPInstanceUID
                for case in found]
    return process, json.loads((work / "out.json").read_text()), sop_uids


def test_given_marked_dicoms_when_asked_for_srs_then_the_srs_carry_the_marked_patient(run):
    _, output, _ = run
    assert [answer["status"] for answer in output["answers"]] == [200, 200]
    for answer in output["answers"]:
        sr = pydicom.dcmread(io.BytesIO(base64.b64decode(answer["body"])))
        assert sr.PatientID == PATIENT_AND_STUDY["PatientID"]
        assert sr.AccessionNumber == PATIENT_AND_STUDY["AccessionNumber"]
        assert sr.StudyInstanceUID == UIDS["StudyInstanceUID"]
    assert str(pydicom.dcmread(io.BytesIO(base64.b64decode(
        output["answers"][1]["body"]))).PatientName) == SINGLE_NAME


def test_given_marked_dicoms_when_asked_for_srs_then_no_marker_nor_uid_in_any_log(run):
    process, output, sop_uids = run
    secrets = [PREFIX, *UIDS.values(), *sop_uids]
    # highdicom made records (the test would prove nothing otherwise), all without their text
    highdicom = [record for record in output["records"] if "name='highdicom" in record]
    assert highdicom and all("text withheld" in record for record in highdicom)
    for secret in secrets:
        assert secret not in process.stdout.upper()
        assert secret not in process.stderr.upper()
        assert [record for record in output["records"] if secret in record.upper()] == []
    # highdicom's warning about the single-component name reached the log as its category only
    warned = [line for line in map(json.loads, filter(None, process.stdout.splitlines()))
              if line.get("event") == "warning"]
    assert ("UserWarning", "highdicom.base") in {(w["category"], w["source"]) for w in warned}
