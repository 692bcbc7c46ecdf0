"""What every DICOM SR the service answers must pass: dicom3tools' dciodvfy with no error (and
only the warnings listed here, each with its reason), and a read-back by highdicom that says
what the JSON answer says, finding by finding."""
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

from chalicelib.reports.codes import finding_code

DCIODVFY = "dciodvfy"
# The warnings an SR may get, and why each is expected (any other fails the test that checks):
ACCEPTED_WARNINGS = (
    # our private coding scheme (PS3.16 8.2: 99 designators are local), described in the SR's
    # Coding Scheme Identification Sequence: dciodvfy knows only the registered designators
    "Unrecognized defined term <99CXRS> for value 1 of attribute <Coding Scheme Designator>",
    # Device UID in a Contributing Equipment item: PS3.3 has it (highdicom's tables of the
    # current standard list it), Debian's dicom3tools (2022) predates it ...
    "Attribute is not present in standard DICOM IOD - (0x0018,0x1002) UI Device UID",
    # ... and so calls the SR a Standard Extended SOP Class
    "Dicom dataset contains attributes not present in standard DICOM IOD - this is a "
    "Standard Extended SOP Class",
    # a type 2 element that is empty (a PNG's patient, a DICOM without a Study ID): DICOMDIR
    # needs values that a Part 10 file may leave empty
    "Missing attribute or value that would be needed to build DICOMDIR",
    # a value copied from the input as the input has it (the RG1 chest's referring physician
    # is 'ward')
    "Value dubious for this VR - (0x0008,0x0090) PN Referring Physician's Name",
)


def dciodvfy(path: Path) -> Tuple[List[str], List[str]]:
    """(error lines, warning lines) of dciodvfy on the file at `path`."""
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return ([line for line in lines if line.startswith("Error")],
            [line for line in lines if line.startswith("Warning")])


def unexpected(warnings: List[str]) -> List[str]:
    return [line for line in warnings if not any(known in line for known in ACCEPTED_WARNINGS)]


def read_sr(body: bytes) -> Any:
    """The SR as highdicom reads it back (a Comprehensive3DSR whose content is a TID 1500
    MeasurementReport)."""
    import io

    import highdicom as hd
    return hd.sr.srread(io.BytesIO(body))


def findings_of(sr: Any) -> List[Dict[str, Any]]:
    """Each measurement group as {"label", "code", "probability", "threshold", "present",
    "sources"}, in the SR's order."""
    from pydicom.sr.codedict import codes
    found = []
    for group in sr.content.get_image_measurement_groups():
        numbers = {m.name.value: m for m in group.get_measurements()}
        assert {m.unit.value for m in numbers.values()} == {"1"}  # UCUM "no units"
        evaluations = group.get_qualitative_evaluations()
        assert len(evaluations) == 1
        evaluation = evaluations[0]
        assert evaluation.name == group.finding_type  # the evaluation is of the finding
        assert evaluation.value in (codes.SCT.Present, codes.SCT.Absent)
        found.append({
            "label": group.tracking_identifier,
            "code": (group.finding_type.value, group.finding_type.scheme_designator,
                     group.finding_type.meaning),
            "probability": numbers[codes.DCM.Probability.value].value,
            "threshold": numbers[codes.DCM.ThresholdValue.value].value,
            "present": evaluation.value == codes.SCT.Present,
            "sources": [image.referenced_sop_instance_uid for image in group.source_images],
        })
    return found


def expected_findings(answer: Dict[str, Any]) -> List[Dict[str, Any]]:
    """findings_of's shape, from the JSON answer (without sources)."""
    expected = []
    for finding in answer["findings"]:
        code = finding_code(finding["label"])
        expected.append({"label": finding["label"], "code": (code.value, code.scheme,
                                                             code.meaning),
                         "probability": finding["probability"],
                         "threshold": finding["threshold"],
                         "present": finding["label"] in answer["positive"]})
    return expected


def assert_says_what_the_answer_says(sr: Any, answer: Dict[str, Any]) -> None:
    found = [{key: value for key, value in finding.items() if key != "sources"}
             for finding in findings_of(sr)]
    assert found == expected_findings(answer)


def texts_of(sr: Any) -> List[str]:
    """The TEXT items of the report's Qualitative Evaluations container."""
    from highdicom.sr import CodedConcept
    from highdicom.sr.utils import find_content_items
    container = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
    found = find_content_items(sr, name=container)
    assert len(found) <= 1
    if not found:
        return []
    items = found[0].ContentSequence
    assert {item.ValueType for item in items} == {"TEXT"}
    return [item.TextValue for item in items]
