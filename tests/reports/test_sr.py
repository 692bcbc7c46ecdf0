"""The DICOM SR of every shared radiograph, classified by the app's own service with the demo
model (chalicelib/reports/sr.py): dciodvfy finds no error in it, highdicom reads back the
answer's findings, a DICOM's SR joins its study and patient and references it, a PNG's is a
new study with an empty patient module, the algorithm is named with a device UID that follows
the weights, and a seed gives the same UIDs every time."""
import copy
import datetime
import io
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from chalicelib.reports.device import device_of
from chalicelib.reports.source import from_json, to_json
from chalicelib.reports.sr import build_sr
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import (
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_MONO2,
    PNG_CARDIOMEGALY,
    fixture_id,
)
from tests.support.sr_checks import (
    assert_says_what_the_answer_says,
    dciodvfy,
    findings_of,
    read_sr,
    texts_of,
    unexpected,
)

DICOMS = [path for path in ALL_FIXTURES if path.suffix == ".dcm"]
PNGS = [path for path in ALL_FIXTURES if path.suffix == ".png"]
PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
         "ReferringPhysicianName", "StudyDescription")
TYPE_3 = ("StudyDescription",)


@pytest.fixture(scope="module")
def classify(client):
    """The app's service (the session's demo model): bytes -> Classification."""
    import app as app_module

    def run(body: bytes, content_type: str, **options):
        return app_module.get_service().classify(body, content_type, **options)
    return run


@pytest.fixture(scope="module")
def classified(classify):
    return {path: classify(path.read_bytes(), CONTENT_TYPE[path.suffix]) for path in ALL_FIXTURES}


@pytest.fixture(scope="module")
def reports(classified):
    """path -> (its SR's bytes, as highdicom reads them back), built once for the module."""
    built = {}
    for path, classification in classified.items():
        body = build_sr(classification.answer, classification.header)
        built[path] = body, read_sr(body)
    return built


def validated(body: bytes, tmp_path) -> list:
    """dciodvfy's warnings on the SR `body` (none unexpected); fails on any error."""
    path = tmp_path / "sr.dcm"
    path.write_bytes(body)
    errors, warned = dciodvfy(path)
    assert errors == []
    assert unexpected(warned) == []
    return warned


def small_dicom(**attributes) -> bytes:
    pixels = (np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) * 7) % 4096
    return make_dicom(pixels, bits_stored=12, **attributes)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_given_each_fixture_when_its_sr_is_built_then_dciodvfy_finds_no_error(
        reports, path, tmp_path):
    body, _ = reports[path]
    validated(body, tmp_path)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_given_each_fixture_then_highdicom_reads_back_the_answers_findings(
        classified, reports, path):
    classification, (_, sr) = classified[path], reports[path]
    assert sr.SOPClassUID == Comprehensive3DSRStorage and sr.Modality == "SR"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert len(findings_of(sr)) == len(classification.answer["findings"]) == 18
    assert_says_what_the_answer_says(sr, classification.answer)
    present = [f["label"] for f in findings_of(sr) if f["present"]]
    assert present == classification.answer["positive"]


@pytest.mark.parametrize("path", DICOMS, ids=fixture_id)
def test_given_a_dicom_then_its_sr_joins_its_study_and_patient_and_references_it(
        reports, path):
    source = pydicom.dcmread(path, stop_before_pixels=True)
    _, sr = reports[path]
    for keyword in PATIENT + STUDY:
        # what the input has, as it has it; a type 2 element it lacks is there and empty
        assert sr.get(keyword) == source.get(keyword, None if keyword in TYPE_3 else ""), keyword
    assert sr.PatientName and sr.PatientID  # the fixtures all have them
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPInstanceUID != source.SOPInstanceUID
    assert sr.get_evidence() == [(source.StudyInstanceUID, source.SeriesInstanceUID,
                                  source.SOPInstanceUID, source.SOPClassUID)]
    assert "PertinentOtherEvidenceSequence" not in sr
    assert {tuple(f["sources"]) for f in findings_of(sr)} == {(source.SOPInstanceUID,)}


@pytest.mark.parametrize("path", PNGS, ids=fixture_id)
def test_given_a_png_then_its_sr_is_a_new_study_with_an_empty_patient_module(
        classified, reports, path):
    assert classified[path].header is None
    _, first = reports[path]
    second = read_sr(build_sr(classified[path].answer, None))
    for keyword in PATIENT + ("AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert keyword in first and first[keyword].value in ("", None), keyword
    assert first.StudyInstanceUID != second.StudyInstanceUID  # a study of its own, each time
    assert (first.StudyDate, first.StudyTime[:6]) == (first.ContentDate, first.ContentTime[:6])
    assert first.get_evidence() == [] and "CurrentRequestedProcedureEvidenceSequence" not in first
    assert all(f["sources"] == [] for f in findings_of(first))


def test_given_the_untrained_demo_then_its_sr_carries_the_warning_and_a_trained_one_none(
        classified, reports, tmp_path):
    answer = classified[PNG_CARDIOMEGALY].answer
    assert answer["model"]["trained"] is False
    assert texts_of(reports[PNG_CARDIOMEGALY][1]) == [answer["model"]["warning"]]
    trained = copy.deepcopy(answer)
    trained["model"]["trained"] = True
    del trained["model"]["warning"]
    body = build_sr(trained, None)
    assert texts_of(read_sr(body)) == []
    validated(body, tmp_path)


def test_given_a_forced_classification_then_the_sr_says_so(classify, tmp_path):
    skull = small_dicom(BodyPartExamined="SKULL", StudyInstanceUID=pydicom.uid.generate_uid(),
                        SeriesInstanceUID=pydicom.uid.generate_uid())
    classification = classify(skull, "application/dicom", force=True)
    body = build_sr(classification.answer, classification.header)
    validated(body, tmp_path)
    texts = texts_of(read_sr(body))
    assert texts[0] == classification.answer["model"]["warning"]
    assert texts[1].startswith("Classified although the image is outside the model's intended "
                               "use (forced): BodyPartExamined (0018,0015) is SKULL")


def test_given_an_answer_then_the_algorithm_is_the_contributing_equipment_and_the_observer(
        classified, reports):
    answer, device = classified[DCM_MONO2].answer, device_of(classified[DCM_MONO2].answer)
    _, sr = reports[DCM_MONO2]
    algorithm = sr.ContributingEquipmentSequence[0]
    purpose = algorithm.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "109102", "DCM", "Processing Equipment")
    assert algorithm.Manufacturer == sr.Manufacturer == "chest-xray-serverless"
    assert algorithm.ManufacturerModelName == sr.ManufacturerModelName == answer["model"]["name"]
    versions = [f"model {answer['model']['version']}", f"service {device.service_version}"]
    assert list(algorithm.SoftwareVersions) == list(sr.SoftwareVersions) == versions
    assert algorithm.DeviceUID == device.uid
    (observer,) = sr.content.get_observer_contexts()
    assert observer.observer_type.value == "121007"  # Device
    assert observer.observer_identifying_attributes.uid == device.uid
    assert (sr.VerificationFlag, sr.CompletionFlag, sr.PreliminaryFlag) == (
        "UNVERIFIED", "COMPLETE", "PRELIMINARY")
    (scheme,) = sr.CodingSchemeIdentificationSequence  # the private codes' scheme
    assert scheme.CodingSchemeDesignator == "99CXRS"


def test_given_new_weights_then_a_new_device_uid_and_the_same_weights_the_same(classified):
    answer = classified[PNG_CARDIOMEGALY].answer
    reweighted = copy.deepcopy(answer)
    reweighted["model"]["sha256"] = "0" * 64

    def device_uid(of: dict) -> str:
        return pydicom.dcmread(io.BytesIO(build_sr(of, None))).ContributingEquipmentSequence[
            0].DeviceUID

    assert device_uid(answer) == device_uid(answer) == device_of(answer).uid
    assert device_uid(reweighted) != device_uid(answer)
    assert device_uid(reweighted) == device_of(reweighted).uid


@pytest.mark.parametrize("path", [DCM_MONO2, PNG_CARDIOMEGALY], ids=fixture_id)
def test_given_a_seed_then_the_same_uids_every_time_and_another_seed_others(classified, path):
    classification = classified[path]

    def uids(seed):
        sr = read_sr(build_sr(classification.answer, classification.header, seed))
        groups = sr.content.get_image_measurement_groups()
        return (sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID,
                tuple(group.tracking_uid for group in groups))

    first, again, other = uids("job-1"), uids("job-1"), uids("job-2")
    assert first == again
    assert first[1:3] != other[1:3] and set(first[3]).isdisjoint(other[3])
    assert len(set(first[3])) == 18  # one tracking UID per finding
    if classification.header is not None:  # the input's study, whatever the seed
        assert first[0] == other[0] == classification.header.StudyInstanceUID
    else:  # a new study, from the seed too
        assert first[0] != other[0]
    fresh, fresh_again = uids(None), uids(None)
    assert fresh[1:3] != fresh_again[1:3] and fresh[1:3] != first[1:3]


def test_given_a_dicom_without_study_or_series_uids_then_a_new_study_and_no_reference(
        classify, tmp_path):
    classification = classify(small_dicom(PatientID="P-1"), "application/dicom")
    assert "StudyInstanceUID" not in classification.header
    body = build_sr(classification.answer, classification.header)
    validated(body, tmp_path)
    sr = read_sr(body)
    assert (sr.PatientName, sr.PatientID) == ("Test^Patient", "P-1")  # copied as it is
    assert sr.StudyInstanceUID and sr.get_evidence() == []
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr
    assert all(f["sources"] == [] for f in findings_of(sr))
    assert sr.StudyDate == ""  # the input's study is unknown, not dated today


def test_given_a_latin1_name_then_the_sr_keeps_the_inputs_character_set_or_writes_utf8(
        classify, tmp_path):
    name = "M\u00fcller^J\u00fcrgen"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = small_dicom(PatientName=name, SpecificCharacterSet="ISO_IR 100",
                           StudyInstanceUID=pydicom.uid.generate_uid(),
                           SeriesInstanceUID=pydicom.uid.generate_uid())
    assert name.encode("latin-1") in body
    classification = classify(body, "application/dicom")
    direct = build_sr(classification.answer, classification.header)
    validated(direct, tmp_path)
    assert read_sr(direct).SpecificCharacterSet == "ISO_IR 100"
    assert str(read_sr(direct).PatientName) == name
    # a job keeps the source elements as DICOM JSON (source.py), which has no character set
    stored = build_sr(classification.answer, from_json(to_json(classification.header)))
    validated(stored, tmp_path)
    assert read_sr(stored).SpecificCharacterSet == "ISO_IR 192"
    assert str(read_sr(stored).PatientName) == name


def test_given_patient_fields_their_vr_does_not_allow_then_they_are_empty_and_the_rest_copied(
        classify, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the values as it writes them
        body = small_dicom(PatientID="P-2", PatientBirthDate="not a date", PatientSex="X",
                           StudyTime="2561", StudyDescription="x" * 80,
                           StudyInstanceUID=pydicom.uid.generate_uid(),
                           SeriesInstanceUID=pydicom.uid.generate_uid())
    classification = classify(body, "application/dicom")
    sr_body = build_sr(classification.answer, classification.header)
    validated(sr_body, tmp_path)
    sr = read_sr(sr_body)
    # type 2: present and empty, never repaired; type 3 (LO, at most 64 characters): left out
    assert (sr.PatientBirthDate, sr.PatientSex, sr.StudyTime) == ("", "", "")
    assert "StudyDescription" not in sr
    assert (sr.PatientID, str(sr.PatientName)) == ("P-2", "Test^Patient")
    assert sr.StudyInstanceUID == classification.header.StudyInstanceUID


def test_given_a_model_name_longer_than_a_long_string_then_the_equipment_names_its_start(
        classified, tmp_path):
    answer = copy.deepcopy(classified[PNG_CARDIOMEGALY].answer)
    answer["model"]["name"] = "chest-" + "x" * 80
    body = build_sr(answer, None)
    validated(body, tmp_path)
    sr = read_sr(body)
    assert sr.ManufacturerModelName == sr.ContributingEquipmentSequence[0].ManufacturerModelName \
        == answer["model"]["name"][:64]
    (observer,) = sr.content.get_observer_contexts()  # a TEXT item: the whole name
    assert observer.observer_identifying_attributes.name == answer["model"]["name"]


@pytest.mark.parametrize("path", [DCM_MONO2, PNG_CARDIOMEGALY], ids=fixture_id)
def test_given_a_seed_and_when_it_was_made_then_every_build_is_the_same_bytes(classified, path):
    # given a job's seed and the time it finished (aware, UTC)
    classification = classified[path]
    finished = datetime.datetime(2026, 12, 1, 9, 30, 5, tzinfo=datetime.timezone.utc)
    # when its SR is built twice
    first, again = (build_sr(classification.answer, classification.header, "job-1", finished)
                    for _ in range(2))
    # then the same bytes, dated when it was made
    assert first == again
    sr = read_sr(first)
    assert (sr.ContentDate, sr.ContentTime[:6]) == ("20261201", "093005")
