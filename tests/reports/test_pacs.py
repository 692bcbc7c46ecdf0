"""A real PACS takes the SR: Debian's Orthanc with its DICOMweb plugin on loopback (one for the
module) is sent a radiograph and the SR POST /xray answers for it by STOW-RS, gives the SR back
by WADO-RS as the same object, and lists both in the radiograph's study by QIDO-RS."""
import io
import uuid

import pydicom
import pytest
import requests

from tests.support.fixtures import DCM_JPEG_MONO1, DCM_MONO2, DCM_QUARTER, fixture_id
from tests.support.orthanc import available, orthanc
from tests.support.sr_checks import findings_of, read_sr

pytestmark = pytest.mark.skipif(not available(), reason="scripts/setup --with-test-tools "
                                                        "installs Orthanc")
DICOM = "application/dicom"
SOP_INSTANCE_UID, MODALITY = "00080018", "00080060"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    with orthanc(tmp_path_factory.mktemp("pacs")) as server:
        yield server


def stow(pacs, *instances: bytes) -> dict:
    """STOW-RS (PS3.18 10.5) of Part 10 instances in one multipart/related request."""
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: " + DICOM.encode()
                    + b"\r\n\r\n" + instance + b"\r\n" for instance in instances)
    body += b"--" + boundary.encode() + b"--\r\n"
    answer = requests.post(
        f"{pacs.dicomweb}studies", data=body, timeout=60,
        headers={"Content-Type": f'multipart/related; type="{DICOM}"; boundary={boundary}',
                 "Accept": "application/dicom+json"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def wado(pacs, study: str, series: str, instance: str) -> list:
    """WADO-RS (PS3.18 10.4) of one instance: the Part 10 bytes of each part of the answer."""
    answer = requests.get(f"{pacs.dicomweb}studies/{study}/series/{series}/instances/{instance}",
                          headers={"Accept": f'multipart/related; type="{DICOM}"'}, timeout=60)
    assert answer.status_code == 200, answer.text
    content_type = answer.headers["Content-Type"]
    assert content_type.startswith("multipart/related")
    boundary = next(param.split("=", 1)[1].strip('"') for param in content_type.split(";")
                    if param.strip().startswith("boundary="))
    parts = []
    for part in answer.content.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        headers, _, payload = part.partition(b"\r\n\r\n")
        assert DICOM.encode() in headers.lower()
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


@pytest.mark.parametrize("path", [DCM_MONO2, DCM_JPEG_MONO1, DCM_QUARTER], ids=fixture_id)
def test_given_a_radiograph_and_its_sr_when_stowed_then_the_pacs_gives_both_back_in_its_study(
        client, pacs, path):
    image = path.read_bytes()
    response = client.http.post("/xray", body=image, headers={"Content-Type": DICOM,
                                                             "Accept": DICOM})
    assert response.status_code == 200
    sr_bytes = response.body
    sent = pydicom.dcmread(io.BytesIO(sr_bytes))
    source = pydicom.dcmread(path, stop_before_pixels=True)

    stowed = stow(pacs, image, sr_bytes)
    # Failed SOP Sequence: none (Orthanc's DICOMweb plugin sends it empty)
    assert stowed.get("00081198", {}).get("Value", []) == []
    referenced = {item["00081155"]["Value"][0] for item in stowed["00081199"]["Value"]}
    assert referenced == {source.SOPInstanceUID, sent.SOPInstanceUID}

    (part,) = wado(pacs, sent.StudyInstanceUID, sent.SeriesInstanceUID, sent.SOPInstanceUID)
    back = pydicom.dcmread(io.BytesIO(part))
    assert back == sent  # every element, the content tree included
    assert findings_of(read_sr(part)) == findings_of(read_sr(sr_bytes))

    listed = {instance[SOP_INSTANCE_UID]["Value"][0]
              for instance in pacs.study_instances(source.StudyInstanceUID)}
    assert {source.SOPInstanceUID, sent.SOPInstanceUID} <= listed
    assert sent.StudyInstanceUID == source.StudyInstanceUID
