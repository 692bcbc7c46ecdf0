"""A classification as a DICOM Structured Report, the form a PACS stores and a reading
workstation shows beside the images: a Comprehensive 3D SR whose content follows TID 1500
(Measurement Report), shaped as IHE AI Results (AIR) asks of an algorithm's results.

- One measurement group (TID 1501) per finding: its code (codes.py) as the finding, the model's
  probability and the finding's threshold as numbers (UCUM "1": a probability from 0 to 1, as
  in the JSON answer), and a qualitative evaluation, the finding's code with SNOMED CT Present
  or Absent: present when the probability is at or above the threshold, as the JSON's
  `positive` says. Each group names the algorithm (TID 4019) and, for a DICOM input, the image.
- The algorithm is the device observer (TID 1002/1004) and the Contributing Equipment (purpose
  Processing Equipment, CID 7005) with manufacturer, model name, software versions (model and
  service) and the device UID that follows the weights (device.py).
- Nobody has verified it: VerificationFlag UNVERIFIED, PreliminaryFlag PRELIMINARY. It is
  COMPLETE: every finding the model gives is in it. What the reader must know before any
  finding (the untrained demo's warning, an image classified against its intended use) is text
  in the report's Qualitative Evaluations container.
- A DICOM input's SR joins the input's study: its patient and study elements are copied
  (source.py; a type 2 one the input lacks, or whose value its VR does not allow, is present and
  empty: never made up nor repaired), its Study Instance UID kept, a new series and instance
  made, and the input referenced (Current Requested Procedure Evidence and each group's source
  image). A PNG or JPEG has no patient nor study: its SR is a new study with an empty patient
  module.

highdicom is slow to import and only SR requests need it: it is imported inside build_sr, and
this module only when an SR is asked for (respond.py)."""
import datetime
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from chalicelib.reports.codes import PRIVATE, PRIVATE_NAME, PRIVATE_VERSION, Code, finding_code
from chalicelib.reports.device import Device, device_of
from chalicelib.reports.source import source_header

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# generate_uid(entropy_srcs=[UID_SALT, seed, purpose]): a job's SR has the same UIDs every time
UID_SALT = "chest-xray-serverless sr"
SERIES_NUMBER = 1
INSTANCE_NUMBER = 1
SERIES_DESCRIPTION = "AI chest X-ray findings (unverified)"
# What was done: the single radiograph the model reads (LOINC, as IHE's Imaging Diagnostic
# Report examples code a single-view chest X-ray).
PROCEDURE = Code("36554-4", "LN", "XR Chest Single View")
# TID 1500's container of report-level qualitative evaluations (UMLS, as HL7's DICOM SR to FHIR
# mapping guide names it), and the concept of its text items.
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = Code("121106", "DCM", "Comment")
# The patient and study elements an SR copies (PS3.3 C.7.1.1, C.7.2.1): type 2 ones
# are present, empty when the input has no value.
PATIENT_AND_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                     "PatientSex", "OtherPatientIDsSequence", "StudyInstanceUID", "StudyDate",
                     "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                     "StudyDescription")
TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
# what a reference to the input image needs (a Hierarchical SOP Instance Reference)
REFERENCE = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
UTF8 = "ISO_IR 192"
SEXES = ("M", "F", "O")  # Patient's Sex's enumerated values (C.7.1.1)


def build_sr(answer: Dict[str, Any], header: Optional["Dataset"],
             uid_seed: Optional[str] = None,
             made_at: Optional[datetime.datetime] = None) -> bytes:
    """The Part 10 bytes of the SR of `answer` (POST /xray's JSON). header: the DICOM input's
    header (None for PNG/JPEG). uid_seed: what the SR's new UIDs (series, instance, a new
    study's, the findings' tracking UIDs) derive from, so that the same job always gives the
    same instance; None for fresh ones. made_at: when the classification was made (its content
    date and time; an aware time is written as UTC), None for now: with a seed and made_at,
    every build is the same bytes."""
    import io

    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import Comprehensive3DSRStorage

    uid = _uid_maker(uid_seed)
    device = device_of(answer)
    series_uid, instance_uid = uid("series"), uid("instance")
    now = _naive(made_at) if made_at is not None else datetime.datetime.now()
    subject, referenced = _subject(header, uid, now)
    if not referenced:
        # highdicom takes the patient and study from an evidence instance: without an input
        # image to reference, a stand-in naming the SR itself, whose reference is then removed
        subject.SOPClassUID = Comprehensive3DSRStorage
        subject.SOPInstanceUID = instance_uid
        subject.SeriesInstanceUID = series_uid

    findings = [_finding_group(finding, index, device, subject if referenced else None, uid)
                for index, finding in enumerate(answer["findings"])]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=device.uid, name=device.model_name,
                    manufacturer_name=device.manufacturer, model_name=device.model_name))),
        procedure_reported=_coded(PROCEDURE),
        imaging_measurements=findings)
    notes = _notes(answer)
    if notes:
        container = hd.sr.ContainerContentItem(
            name=_coded(QUALITATIVE_EVALUATIONS),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        container.ContentSequence = hd.sr.ContentSequence([
            hd.sr.TextContentItem(name=_coded(COMMENT), value=note,
                                  relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
            for note in notes])
        report[0].ContentSequence.append(container)

    equipment = hd.ContributingEquipment(
        manufacturer=device.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=_lo(device.model_name),
        software_versions=_software_versions(device),
        contribution_datetime=now,
        contribution_description="Classified the image; wrote this report")
    equipment.DeviceUID = device.uid
    schemes = None
    if any(finding_code(f["label"]).scheme == PRIVATE for f in answer["findings"]):
        schemes = [hd.coding_schemes.CodingSchemeIdentificationItem(
            designator=PRIVATE, name=PRIVATE_NAME, version=PRIVATE_VERSION,
            responsible_organization=device.manufacturer)]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[subject], content=report, series_instance_uid=series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=instance_uid,
        instance_number=INSTANCE_NUMBER, manufacturer=device.manufacturer,
        manufacturer_model_name=_lo(device.model_name),
        software_versions=_software_versions(device), series_description=SERIES_DESCRIPTION,
        is_complete=True, is_final=False, is_verified=False,
        contributing_equipment=[equipment], coding_schemes=schemes,
        content_date=now.date(), content_time=now.time(), series_date=now.date(),
        series_time=now.time(), specific_character_set=_character_set(header, subject, answer))
    if not referenced:
        for keyword in ("CurrentRequestedProcedureEvidenceSequence",
                        "PertinentOtherEvidenceSequence"):
            if keyword in sr:
                delattr(sr, keyword)
    if made_at is not None:
        # highdicom stamps the instance, and its own equipment item, with the time of the
        # build: a report made before is dated when it was made, so every build is the same
        from pydicom.valuerep import DA, DT, TM
        sr.InstanceCreationDate, sr.InstanceCreationTime = DA(now.date()), TM(now.time())
        for item in sr.ContributingEquipmentSequence:
            item.ContributionDateTime = DT(now)
    out = io.BytesIO()
    sr.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _naive(moment: datetime.datetime) -> datetime.datetime:
    """DICOM's dates and times carry no zone: an aware time as UTC, a naive one as it is."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def _uid_maker(seed: Optional[str]) -> Callable[[str], str]:
    from pydicom.uid import generate_uid

    def make(purpose: str) -> str:
        if seed is None:
            return str(generate_uid())
        return str(generate_uid(entropy_srcs=[UID_SALT, seed, purpose]))
    return make


def _subject(header: Optional["Dataset"], uid: Callable[[str], str],
             now: datetime.datetime) -> Tuple["Dataset", bool]:
    """(the patient and study the SR belongs to, whether it is the input image to reference).
    The input's own elements, type 2 ones it lacks empty; a new study for a PNG or JPEG (dated
    now: it is the study this classification made), and for a DICOM without a Study Instance
    UID (then nothing can reference the image)."""
    from pydicom.dataset import Dataset
    source = source_header(header) if header is not None else Dataset()
    subject = Dataset()
    for keyword in PATIENT_AND_STUDY:
        # a value the input's VR does not allow (a birth date that is no date) cannot be in a
        # valid SR: it is left out, as if the input had none, never repaired nor guessed
        if keyword in source and (keyword == "StudyInstanceUID" or _valid(source[keyword])):
            subject.add(source[keyword])
    for keyword in TYPE_2:
        if keyword not in subject:
            setattr(subject, keyword, "")
    if not subject.get("StudyInstanceUID"):
        subject.StudyInstanceUID = uid("study")
        if header is None:
            subject.StudyDate, subject.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    referenced = (header is not None and all(source.get(keyword) for keyword in REFERENCE)
                  and _is_image(str(source.SOPClassUID)))
    if referenced:
        for keyword in REFERENCE[1:]:
            subject.add(source[keyword])
    return subject, referenced


def _valid(element: Any) -> bool:
    """Whether a copied element's value is one its VR allows (PS3.5 6.2), as pydicom and
    highdicom check it when the SR is made and written."""
    from pydicom import config
    from pydicom.valuerep import DA, TM, validate_value
    if element.VR == "SQ" or element.value in (None, ""):
        return True
    try:
        if element.VR == "DA":
            DA(element.value)
        elif element.VR == "TM":
            TM(element.value)
        elif element.keyword == "PatientSex" and element.value not in SEXES:
            return False
        validate_value(element.VR, element.value, config.RAISE)
    except (ValueError, TypeError, OverflowError):  # their messages quote the value: not kept
        return False
    return True


def _is_image(sop_class_uid: str) -> bool:
    """Whether highdicom knows the SOP class as an image's (what an SR's IMAGE item and its
    evidence may reference)."""
    # highdicom's own tables of PS3.3 (a private module of the pinned version)
    from highdicom._standard_utils import does_iod_have_pixel_data, get_sop_class_iod_map
    return sop_class_uid in get_sop_class_iod_map() and does_iod_have_pixel_data(sop_class_uid)


def _finding_group(finding: Dict[str, Any], index: int, device: Device,
                   image: Optional["Dataset"], uid: Callable[[str], str]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    label, probability, threshold = finding["label"], finding["probability"], finding["threshold"]
    code = _coded(finding_code(label))
    no_units = codes.UCUM.NoUnits
    sources = None
    if image is not None:
        sources = [hd.sr.SourceImageForMeasurementGroup(str(image.SOPClassUID),
                                                        str(image.SOPInstanceUID))]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(f"finding {index} {label}"),
                                                     identifier=label),
        finding_type=code,
        algorithm_id=hd.sr.AlgorithmIdentification(name=device.model_name,
                                                   version=device.model_version,
                                                   manufacturer=device.manufacturer),
        measurements=[
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(probability),
                              unit=no_units),
            hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=float(threshold),
                              unit=no_units)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=code, value=codes.SCT.Present if probability >= threshold else codes.SCT.Absent)],
        source_images=sources)


def _notes(answer: Dict[str, Any]) -> List[str]:
    """What a reader must know before reading any finding."""
    notes = []
    model = answer["model"]
    if not model.get("trained", False):
        notes.append(model.get("warning") or "These weights are untrained: the findings are "
                                             "meaningless and are not a diagnosis.")
    use = answer.get("image", {}).get("intended_use", {})
    if use.get("result") == "forced":
        refusal = use.get("refusal", {})
        notes.append("Classified although the image is outside the model's intended use "
                     f"(forced): {refusal.get('Message', '')}".rstrip(": "))
    return notes


def _software_versions(device: Device) -> List[str]:
    return [_lo(f"model {device.model_version}"), _lo(f"service {device.service_version}")]


def _lo(text: str) -> str:
    """A Long String (LO) value: at most 64 characters."""
    return text[:64]


def _coded(code: Code) -> Any:
    from highdicom.sr import CodedConcept
    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _character_set(header: Optional["Dataset"], subject: "Dataset",
                   answer: Dict[str, Any]) -> Any:
    """The input's Specific Character Set when it has one (its names are written as it wrote
    them), else UTF-8 when any text needs more than ASCII, else none (the default)."""
    if header is not None and header.get("SpecificCharacterSet"):
        return header.SpecificCharacterSet
    texts = [str(element.value) for element in subject if element.VR in ("PN", "LO", "SH")]
    texts += [f["label"] for f in answer["findings"]] + [str(v) for v in answer["model"].values()]
    return None if all(text.isascii() for text in texts) else UTF8
