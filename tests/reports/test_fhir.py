"""The FHIR Bundle of a classification: every shared radiograph, classified by the real service
with the demo model, gives a Bundle that fhir.resources' R4B models validate as a whole and entry
by entry; its coded values are in the value sets they are bound to (the models check structure
and types, not bindings); it says what the JSON answer says; a DICOM input's study is named by
its UIDs and a PNG's is not; a seed gives the same Bundle every time. POST /xray answers it for
Accept: application/fhir+json, and its patient fields are never logged."""
import copy
import io
import json
import re
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pydicom
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from chalicelib import __version__
from chalicelib.reports import fhir
from chalicelib.reports.codes import FHIR_SYSTEMS, PRIVATE, finding_code
from chalicelib.reports.device import device_of
from chalicelib.reports.negotiation import FHIR
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import (
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_J2K,
    DCM_MONO2,
    PNG_CARDIOMEGALY,
    fixture_id,
)

DICOM_FIXTURES = [p for p in ALL_FIXTURES if p.suffix == ".dcm"]
PNG_FIXTURES = [p for p in ALL_FIXTURES if p.suffix == ".png"]

# Required bindings of the elements the Bundle uses (FHIR R4 4.0.1 value sets)
BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch",
               "batch-response", "history", "searchset", "collection"}
REPORT_STATUS = {"registered", "partial", "preliminary", "final", "amended", "corrected",
                 "appended", "cancelled", "entered-in-error", "unknown"}
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
IMAGING_STUDY_STATUS = {"registered", "available", "cancelled", "entered-in-error", "unknown"}
DEVICE_STATUS = {"active", "inactive", "entered-in-error", "unknown"}
DEVICE_NAME_TYPE = {"udi-label-name", "user-friendly-name", "patient-reported-name",
                    "manufacturer-name", "model-name", "other"}
# the preferred/extensible bindings, as this report uses them
OBSERVATION_CATEGORY = {"social-history", "vital-signs", "imaging", "laboratory", "procedure",
                        "survey", "exam", "therapy", "activity"}
INTERPRETATION = {"POS": "Positive", "NEG": "Negative"}
ACQUISITION_MODALITIES = {getattr(codes.cid29, name).value for name in codes.cid29.dir()}
UUID_URL = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FHIR_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(scope="module")
def service(client):
    """The app's own service, reading the demo model (the session's warm app)."""
    import app as app_module
    return app_module.get_service()


@pytest.fixture(scope="module")
def classified(service):
    """fixture file name -> Classification, each shared radiograph classified once."""
    return {path.name: service.classify(path.read_bytes(), CONTENT_TYPE[path.suffix])
            for path in ALL_FIXTURES}


def resources(bundle: dict, kind: str) -> list:
    return [entry["resource"] for entry in bundle["entry"]
            if entry["resource"]["resourceType"] == kind]


def the(bundle: dict, kind: str) -> dict:
    (found,) = resources(bundle, kind)
    return found


def references(node) -> list:
    """Every Reference.reference in a JSON tree."""
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in references(value)]
    if isinstance(node, list):
        return [r for value in node for r in references(value)]
    return []


def reference_types(node) -> list:
    """Every Reference.type in a JSON tree."""
    if isinstance(node, dict):
        # a Reference: a string type beside an identifier or a reference, not in a resource
        found = [node["type"]] if isinstance(node.get("type"), str) and (
            "identifier" in node or "reference" in node) and "resourceType" not in node else []
        return found + [t for value in node.values() for t in reference_types(value)]
    if isinstance(node, list):
        return [t for value in node for t in reference_types(value)]
    return []


def ids(bundle: dict) -> set:
    return {entry["resource"]["id"] for entry in bundle["entry"]}


def assert_valid_r4b(bundle: dict) -> None:
    """The Bundle, and each entry with its own resource model, validate; it is plain JSON."""
    assert json.loads(json.dumps(bundle)) == bundle
    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def assert_coded_values_allowed(bundle: dict) -> None:
    """What the models do not check: codes against their value sets, references that resolve."""
    assert bundle["type"] == "collection" and bundle["type"] in BUNDLE_TYPE
    if "timestamp" in bundle:
        assert FHIR_INSTANT.match(bundle["timestamp"])
    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(UUID_URL.match(url) for url in urls)
    assert urls == [f"urn:uuid:{entry['resource']['id']}" for entry in bundle["entry"]]
    # every literal reference is to an entry of the Bundle; every typed one names a resource
    assert set(references(bundle)) <= set(urls)
    for kind in reference_types(bundle):
        assert get_fhir_model_class(kind).__name__ == kind
    report = the(bundle, "DiagnosticReport")
    assert report["status"] in REPORT_STATUS and report["status"] == "preliminary"
    assert report["category"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
        "display": "Radiology"}]}]
    assert report["code"]["coding"] == [{"system": "http://loinc.org", "code": "36554-4",
                                         "display": "XR Chest Single view"}]
    assert report.get("issued") == bundle.get("timestamp")
    if "issued" in report:
        assert FHIR_INSTANT.match(report["issued"])
    for observation in resources(bundle, "Observation"):
        assert observation["status"] in OBSERVATION_STATUS
        assert observation["status"] == "preliminary"
        (category,) = observation["category"]
        assert category["coding"][0]["code"] in OBSERVATION_CATEGORY
        assert category["coding"][0]["system"] == \
            "http://terminology.hl7.org/CodeSystem/observation-category"
        (coding,) = observation["code"]["coding"]
        assert coding["system"] in FHIR_SYSTEMS.values()
        (interpretation,) = observation["interpretation"]
        (code,) = interpretation["coding"]
        assert code["system"] == \
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
        assert INTERPRETATION[code["code"]] == code["display"]
        quantities = [observation["valueQuantity"], observation["referenceRange"][0]["high"]]
        for quantity in quantities:
            assert (quantity["system"], quantity["code"]) == ("http://unitsofmeasure.org", "1")
            assert 0.0 <= quantity["value"] <= 1.0
    device = the(bundle, "Device")
    assert device["status"] in DEVICE_STATUS
    assert {name["type"] for name in device["deviceName"]} <= DEVICE_NAME_TYPE
    assert device["type"]["coding"] == [{
        "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "109102",
        "display": codes.cid7005.ProcessingEquipment.meaning}]
    for study in resources(bundle, "ImagingStudy"):
        assert study["status"] in IMAGING_STUDY_STATUS
        for modality in study["modality"] + [s["modality"] for s in study.get("series", [])]:
            assert modality["system"] == FHIR_SYSTEMS["DCM"]
            assert modality["code"] in ACQUISITION_MODALITIES
        for series in study.get("series", []):
            for instance in series.get("instance", []):
                assert instance["sopClass"]["system"] == "urn:ietf:rfc:3986"
                sop_class = UID(instance["sopClass"]["code"].removeprefix("urn:oid:"))
                assert sop_class.is_valid and sop_class.name.endswith("Storage")


def assert_says_what_the_json_says(bundle: dict, answer: dict) -> None:
    report = the(bundle, "DiagnosticReport")
    observations = resources(bundle, "Observation")
    # one Observation per finding, in the answer's order, each a result of the report
    assert [o["code"]["coding"][0]["code"] for o in observations] == \
        [finding_code(f["label"]).value for f in answer["findings"]]
    assert [r["reference"] for r in report["result"]] == \
        [f"urn:uuid:{o['id']}" for o in observations]
    device_url = f"urn:uuid:{the(bundle, 'Device')['id']}"
    for finding, observation in zip(answer["findings"], observations):
        code = finding_code(finding["label"])
        coding = observation["code"]["coding"][0]
        assert (coding["system"], coding["code"], coding["display"]) == \
            (FHIR_SYSTEMS[code.scheme], code.value, code.meaning)
        assert observation["valueQuantity"]["value"] == finding["probability"]
        assert observation["referenceRange"][0]["high"]["value"] == finding["threshold"]
        expected = "POS" if finding["label"] in answer["positive"] else "NEG"
        assert observation["interpretation"][0]["coding"][0]["code"] == expected
        assert observation["device"]["reference"] == device_url
        assert observation["note"] == [{"text": answer["model"]["warning"]}]
    # the conclusion names each positive finding and carries the demo model's warning
    assert answer["positive"], "the demo model calls some findings on every fixture"
    for label in answer["positive"]:
        assert finding_code(label).meaning in report["conclusion"]
    negative = [f["label"] for f in answer["findings"] if f["label"] not in answer["positive"]]
    for label in negative:
        assert f"{finding_code(label).meaning} 0." not in report["conclusion"]
    assert report["conclusion"].endswith(answer["model"]["warning"])
    # the Device: model name, versions, weights sha256, the DICOM device UID of the SR
    device = the(bundle, "Device")
    expected_device = device_of(answer)
    assert device["deviceName"] == [{"name": answer["model"]["name"], "type": "model-name"}]
    assert device["manufacturer"] == expected_device.manufacturer
    assert [v["value"] for v in device["version"]] == [answer["model"]["version"], __version__]
    identifiers = {i["system"]: i["value"] for i in device["identifier"]}
    assert identifiers == {"urn:dicom:uid": f"urn:oid:{expected_device.uid}",
                           fhir.WEIGHTS_SHA256: answer["model"]["sha256"]}
    assert device["note"] == [{"text": answer["model"]["warning"]}]


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_given_each_shared_radiograph_when_classified_then_its_bundle_is_valid_r4b_and_coded(
        classified, path):
    # given the real service's classification of the fixture
    classification = classified[path.name]
    # when it is built as a Bundle
    bundle = fhir.build_bundle(classification.answer, classification.header)
    # then the R4B models take it, its codes are in their value sets, it says what JSON says
    assert_valid_r4b(bundle)
    assert_coded_values_allowed(bundle)
    assert_says_what_the_json_says(bundle, classification.answer)


@pytest.mark.parametrize("path", DICOM_FIXTURES, ids=fixture_id)
def test_given_a_dicom_input_when_built_then_its_study_series_and_instance_are_named_by_uid(
        classified, path):
    classification = classified[path.name]
    header = classification.header
    bundle = fhir.build_bundle(classification.answer, header)
    study = the(bundle, "ImagingStudy")
    study_url = f"urn:uuid:{study['id']}"
    # the study by its Study Instance UID (and its accession number where the file has one)
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{header.StudyInstanceUID}"} in \
        study["identifier"]
    accession = [i for i in study["identifier"] if i.get("type", {}).get("coding", [{}])[0]
                 .get("code") == "ACSN"]
    report = the(bundle, "DiagnosticReport")
    if header.get("AccessionNumber"):
        assert [a["value"] for a in accession] == [header.AccessionNumber]
        assert report["basedOn"] == [{"type": "ServiceRequest", "identifier": accession[0]}]
    else:
        assert accession == [] and "basedOn" not in report
    (series,) = study["series"]
    assert series["uid"] == header.SeriesInstanceUID
    assert series["modality"]["code"] == header.Modality
    assert series["instance"] == [{"uid": header.SOPInstanceUID, "sopClass": {
        "system": "urn:ietf:rfc:3986", "code": f"urn:oid:{header.SOPClassUID}"}}]
    # the report and every finding point to it; the patient is the header's Patient ID only
    assert report["imagingStudy"] == [{"reference": study_url}]
    patient = {"type": "Patient", "identifier": {"value": header.PatientID}}
    assert study["subject"] == report["subject"] == patient
    for observation in resources(bundle, "Observation"):
        assert observation["derivedFrom"] == [{"reference": study_url}]
        assert observation["subject"] == patient
    assert resources(bundle, "Patient") == []
    # the study's date, where the header has one, is when the findings hold
    if header.get("StudyDate"):
        date = str(header.StudyDate)
        assert report["effectiveDateTime"] == f"{date[:4]}-{date[4:6]}-{date[6:]}"
        assert study["started"] == report["effectiveDateTime"]
    else:
        assert "effectiveDateTime" not in report and "started" not in study


def test_the_shared_dicoms_cover_both_an_accession_number_and_none(classified):
    has = [bool(classified[p.name].header.get("AccessionNumber")) for p in DICOM_FIXTURES]
    assert True in has and False in has


@pytest.mark.parametrize("path", PNG_FIXTURES, ids=fixture_id)
def test_given_a_png_input_when_built_then_no_study_patient_or_date(classified, path):
    classification = classified[path.name]
    assert classification.header is None
    bundle = fhir.build_bundle(classification.answer, classification.header)
    assert resources(bundle, "ImagingStudy") == [] and resources(bundle, "Patient") == []
    report = the(bundle, "DiagnosticReport")
    for resource in [report, *resources(bundle, "Observation")]:
        assert not {"subject", "imagingStudy", "derivedFrom", "basedOn",
                    "effectiveDateTime"} & set(resource)
    # the only DICOM UID left is the algorithm's own
    dicom_uids = [i for e in bundle["entry"] for i in e["resource"].get("identifier", [])
                  if i.get("system") == "urn:dicom:uid"]
    assert dicom_uids == [{"system": "urn:dicom:uid",
                           "value": f"urn:oid:{device_of(classification.answer).uid}"}]


@pytest.mark.parametrize("path", [DCM_J2K, PNG_CARDIOMEGALY], ids=fixture_id)
def test_given_a_seed_when_built_twice_then_the_same_bundle_without_the_seed_in_it(
        classified, path):
    # given a classification and a job's id as the seed
    classification = classified[path.name]
    answer, header = classification.answer, classification.header
    seed, other_seed = "job-7b1f0c9e2d4a", "job-0d3c5e7f9a1b"
    # when built twice with it, and once with another seed
    first = fhir.build_bundle(answer, header, uid_seed=seed)
    again = fhir.build_bundle(answer, header, uid_seed=seed)
    other = fhir.build_bundle(answer, header, uid_seed=other_seed)
    # then the same Bundle, byte for byte (no time of the reading in it), valid as ever
    assert json.dumps(first) == json.dumps(again)
    assert_valid_r4b(first)
    assert_coded_values_allowed(first)
    assert "timestamp" not in first and "issued" not in the(first, "DiagnosticReport")
    # every id but the Device's changes with the seed (the Device is the weights'), and the
    # seed, the handle to a job's result, is nowhere in the Bundle
    assert ids(first) & ids(other) == {the(first, "Device")["id"]}
    assert seed not in json.dumps(first) and seed.removeprefix("job-") not in json.dumps(first)
    # and, told when the job finished, it is issued then, on every build
    finished = datetime(2026, 12, 1, 9, 30, 5, tzinfo=timezone.utc)
    dated = fhir.build_bundle(answer, header, uid_seed=seed, made_at=finished)
    assert json.dumps(dated) == json.dumps(fhir.build_bundle(answer, header, uid_seed=seed,
                                                             made_at=finished))
    assert dated["timestamp"] == "2026-12-01T09:30:05.000Z"
    assert the(dated, "DiagnosticReport")["issued"] == dated["timestamp"]


def test_given_a_bundle_changed_by_its_caller_then_the_next_one_is_not(classified):
    classification = classified[DCM_J2K.name]
    first = fhir.build_bundle(classification.answer, classification.header, uid_seed="a")
    report = the(first, "DiagnosticReport")
    report["code"]["coding"][0]["code"] = "changed"
    report["subject"]["identifier"]["value"] = "changed"
    again = fhir.build_bundle(classification.answer, classification.header, uid_seed="a")
    assert the(again, "DiagnosticReport")["code"]["coding"][0]["code"] == "36554-4"
    assert {r["subject"]["identifier"]["value"] for r in resources(again, "Observation")} == {
        classification.header.PatientID}


def test_given_no_seed_when_built_twice_then_new_ids_but_the_same_device(classified):
    classification = classified[DCM_J2K.name]
    first = fhir.build_bundle(classification.answer, classification.header)
    second = fhir.build_bundle(classification.answer, classification.header)
    assert ids(first) & ids(second) == {the(first, "Device")["id"]}
    # issued now: the report, every Observation and the Bundle at the same instant
    issued = first["timestamp"]
    assert FHIR_INSTANT.match(issued) and issued.endswith("Z")
    age = datetime.now(timezone.utc) - datetime.fromisoformat(issued)
    assert timedelta(0) <= age < timedelta(minutes=1)
    assert {r.get("issued") for r in [the(first, "DiagnosticReport"),
                                       *resources(first, "Observation")]} == {issued}
    png = classified[PNG_CARDIOMEGALY.name]
    assert the(fhir.build_bundle(png.answer, None), "Device") == the(first, "Device")


def test_given_a_header_without_patient_id_then_no_subject_and_the_study_by_reference(
        classified):
    # given the real header of a shared DICOM, without its Patient ID
    classification = classified[DCM_J2K.name]
    header = copy.deepcopy(classification.header)
    del header.PatientID
    # when built
    bundle = fhir.build_bundle(classification.answer, header)
    # then valid, no subject anywhere, and the report names the study by its UID alone (an
    # ImagingStudy resource needs a subject)
    assert_valid_r4b(bundle)
    assert_coded_values_allowed(bundle)
    assert resources(bundle, "ImagingStudy") == []
    study = {"type": "ImagingStudy", "identifier": {
        "system": "urn:dicom:uid", "value": f"urn:oid:{header.StudyInstanceUID}"}}
    report = the(bundle, "DiagnosticReport")
    assert report["imagingStudy"] == [study]
    assert report["basedOn"][0]["identifier"]["value"] == header.AccessionNumber
    for resource in [report, *resources(bundle, "Observation")]:
        assert "subject" not in resource
    assert all(o["derivedFrom"] == [study] for o in resources(bundle, "Observation"))


@pytest.mark.parametrize("study_date", ["2004-08-26", "20041399", "", "2004"])
def test_given_a_study_date_that_is_not_a_dicom_date_then_no_effective_time(
        classified, study_date):
    classification = classified[DCM_J2K.name]
    header = copy.deepcopy(classification.header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that the value is not a DA
        header.StudyDate = study_date
    bundle = fhir.build_bundle(classification.answer, header)
    assert_valid_r4b(bundle)
    assert "effectiveDateTime" not in the(bundle, "DiagnosticReport")
    assert "started" not in the(bundle, "ImagingStudy")


def test_given_an_issuer_of_patient_id_then_it_assigns_the_identifier(classified):
    classification = classified[DCM_MONO2.name]
    header = copy.deepcopy(classification.header)
    header.IssuerOfPatientID = "NIH Clinical Center"
    bundle = fhir.build_bundle(classification.answer, header)
    assert_valid_r4b(bundle)
    assert the(bundle, "DiagnosticReport")["subject"]["identifier"] == {
        "value": header.PatientID, "assigner": {"display": "NIH Clinical Center"}}


def test_given_a_lateral_view_classified_by_force_then_the_conclusion_says_so(service):
    # given a shared DICOM whose header says it is a lateral view, classified with force
    ds = pydicom.dcmread(DCM_MONO2)
    ds.ViewPosition = "LL"
    out = io.BytesIO()
    ds.save_as(out)
    classification = service.classify(out.getvalue(), "application/dicom", force=True)
    assert classification.answer["image"]["intended_use"]["result"] == "forced"
    # when built
    bundle = fhir.build_bundle(classification.answer, classification.header)
    # then the conclusion names the refusal and the tag's value, without the refusal's advice
    assert_valid_r4b(bundle)
    conclusion = the(bundle, "DiagnosticReport")["conclusion"]
    assert "outside the model's intended use (UnsupportedView: ViewPosition (0018,5101) is LL" \
        in conclusion
    assert "force=true" not in conclusion


def test_given_a_passed_intended_use_then_the_conclusion_does_not_mention_it(classified):
    classification = classified[DCM_MONO2.name]
    assert classification.answer["image"]["intended_use"]["result"] == "passed"
    bundle = fhir.build_bundle(classification.answer, classification.header)
    assert "intended use" not in the(bundle, "DiagnosticReport")["conclusion"]


def test_given_a_trained_model_without_warning_then_no_warning_anywhere(classified):
    # given the demo's answer as a trained model's would be (unit test: the answer edited)
    answer = copy.deepcopy(classified[PNG_CARDIOMEGALY.name].answer)
    answer["model"].update(trained=True)
    del answer["model"]["warning"]
    bundle = fhir.build_bundle(answer, None)
    assert_valid_r4b(bundle)
    assert all("note" not in e["resource"] for e in bundle["entry"])
    assert "meaningless" not in the(bundle, "DiagnosticReport")["conclusion"]


def test_given_an_untrained_model_without_warning_then_the_report_still_says_it(classified):
    answer = copy.deepcopy(classified[PNG_CARDIOMEGALY.name].answer)
    del answer["model"]["warning"]
    bundle = fhir.build_bundle(answer, None)
    conclusion = the(bundle, "DiagnosticReport")["conclusion"]
    assert "untrained" in conclusion and "meaningless" in conclusion
    assert the(bundle, "Device")["note"][0]["text"] in conclusion


def test_given_no_positive_finding_then_the_conclusion_says_none(classified):
    answer = copy.deepcopy(classified[PNG_CARDIOMEGALY.name].answer)
    for finding in answer["findings"]:
        finding["threshold"] = 0.99
    answer["positive"] = []
    bundle = fhir.build_bundle(answer, None)
    assert_coded_values_allowed(bundle)
    assert f"None of the {len(answer['findings'])} findings" in \
        the(bundle, "DiagnosticReport")["conclusion"]
    assert {o["interpretation"][0]["coding"][0]["code"]
            for o in resources(bundle, "Observation")} == {"NEG"}


def test_given_a_label_no_table_codes_then_a_private_code_in_a_valid_bundle(classified):
    answer = copy.deepcopy(classified[PNG_CARDIOMEGALY.name].answer)
    answer["findings"][0]["label"] = "Tracheal_Deviation"
    answer["positive"][0] = "Tracheal_Deviation"
    bundle = fhir.build_bundle(answer, None)
    assert_valid_r4b(bundle)
    coding = resources(bundle, "Observation")[0]["code"]["coding"][0]
    assert coding["system"] == FHIR_SYSTEMS[PRIVATE] and coding["code"].startswith("L")
    assert coding["display"] == "Tracheal Deviation"
    assert "Tracheal Deviation" in the(bundle, "DiagnosticReport")["conclusion"]


@pytest.mark.parametrize("path", [PNG_CARDIOMEGALY, DCM_J2K], ids=fixture_id)
def test_given_accept_fhir_when_posted_then_a_valid_bundle_of_the_same_findings(client, path):
    # given the JSON answer for the fixture
    body, content_type = path.read_bytes(), CONTENT_TYPE[path.suffix]
    as_json = json.loads(client.http.post("/xray", body=body,
                                          headers={"Content-Type": content_type}).body)
    # when the same image is posted asking for FHIR
    response = client.http.post("/xray", body=body, headers={
        "Content-Type": content_type, "Accept": FHIR})
    # then a Bundle, under its media type, that validates and holds the same findings
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == FHIR
    bundle = json.loads(response.body)
    assert_valid_r4b(bundle)
    assert_coded_values_allowed(bundle)
    probabilities = {o["code"]["coding"][0]["code"]: o["valueQuantity"]["value"]
                     for o in resources(bundle, "Observation")}
    assert probabilities == {finding_code(f["label"]).value: f["probability"]
                             for f in as_json["findings"]}
    studies = [i["value"] for s in resources(bundle, "ImagingStudy") for i in s["identifier"]
               if i.get("system") == "urn:dicom:uid"]
    if path.suffix == ".dcm":
        header = pydicom.dcmread(path, stop_before_pixels=True)
        assert studies == [f"urn:oid:{header.StudyInstanceUID}"]
    else:
        assert studies == []


def test_given_a_dicom_with_patient_fields_when_posted_for_fhir_then_reported_never_logged(
        client, capsys):
    # given a DICOM whose patient and study fields are markers
    marker = "PHIMARKFHIR"
    pixels = (np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) * 7) % 4096
    body = make_dicom(pixels, bits_stored=12, PatientID=f"{marker}ID", PatientName=f"{marker}^N",
                      AccessionNumber=f"{marker}AC", StudyInstanceUID="1.2.3.4.5.6789",
                      StudyDate="20240102")
    capsys.readouterr()
    # when posted asking for FHIR
    response = client.http.post("/xray", body=body, headers={
        "Content-Type": "application/dicom", "Accept": FHIR})
    captured = capsys.readouterr()
    # then the Bundle names the patient and the order by the header's values
    assert response.status_code == 200, response.body
    bundle = json.loads(response.body)
    assert_valid_r4b(bundle)
    report = the(bundle, "DiagnosticReport")
    assert report["subject"]["identifier"]["value"] == f"{marker}ID"
    assert report["basedOn"][0]["identifier"]["value"] == f"{marker}AC"
    assert f"{marker}^N" not in response.body.decode()  # the name is not copied at all
    # and the request was logged, without any of them
    assert '"event":"request"' in captured.out.replace(" ", "")
    assert marker not in captured.out + captured.err
    assert "1.2.3.4.5.6789" not in captured.out + captured.err
