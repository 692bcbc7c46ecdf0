"""A classification as a FHIR R4 Bundle for the record: a preliminary radiology DiagnosticReport,
one Observation per finding (its probability, positive or negative against its threshold) and
the algorithm as a Device, plus, for a DICOM input, the ImagingStudy it was read from.

The Bundle is a "collection": the receiver decides what to store. A "document" would make this
service the attested author of a clinical document (a Composition, signed off), which a
preliminary, unverified machine result is not; a "transaction" would decide for the EHR how
its server stores the resources.

Nothing is invented: the report names the patient only by the input header's Patient ID, as a
logical reference (the EHR already knows its patient; a Patient resource with the few fields a
DICOM header copies would invite a duplicate record), and a PNG or JPEG gets no subject and no
study at all. The findings are probabilities, not diagnoses: no coded conclusion (an EHR may
lift those into a problem list), and an untrained model's warning is in the conclusion and on
every Observation, which a receiver may show on its own.

Ids and times: with uid_seed (an upload job's), every id derives from it one way (a job's id is
the handle to its result: the ids must not reveal it), so the same job always gives the same
Bundle; it is issued when the job finished (made_at), never at the time of each read, and a
seeded Bundle without made_at carries no issue time. Without a seed, the ids are new and the
report is issued now.
The Device's id follows the weights' sha256 alone, as its DICOM device UID does: the same
algorithm is the same Device in every report."""
import copy
import re
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from chalicelib.reports.codes import DCM, FHIR_SYSTEMS, PRIVATE, PRIVATE_VERSION, finding_code
from chalicelib.reports.device import Device, device_of

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# code systems (FHIR R4 terminology)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
DICOM_UID = "urn:dicom:uid"  # identifier system of DICOM UIDs, values as urn:oid:<uid>
URI = "urn:ietf:rfc:3986"  # identifier system of a value that is itself a URI
WEIGHTS_SHA256 = "urn:chest-xray-serverless:weights-sha256"

STATUS = "preliminary"  # a machine result nobody has verified
RADIOLOGY = {"system": DIAGNOSTIC_SERVICE, "code": "RAD", "display": "Radiology"}
IMAGING = {"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}
# the model reads one frontal view: LOINC's view-agnostic single view chest X-ray
CHEST_XRAY = {"system": LOINC, "code": "36554-4", "display": "XR Chest Single view"}
POSITIVE = {"system": INTERPRETATION, "code": "POS", "display": "Positive"}
NEGATIVE = {"system": INTERPRETATION, "code": "NEG", "display": "Negative"}
ACCESSION = {"system": IDENTIFIER_TYPE, "code": "ACSN", "display": "Accession ID"}
# DICOM's code for the Device's kind (CID 7005, as pydicom ships it)
PROCESSING_EQUIPMENT = {"system": FHIR_SYSTEMS[DCM], "code": "109102",
                        "display": "Processing Equipment"}
# a probability is a pure number: UCUM's unity, the same value as the JSON answer's
UNITY = {"unit": "1", "system": UCUM, "code": "1"}

# uuid5 namespace of every id made from a seed
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:chest-xray-serverless:fhir")
_DA = re.compile(r"^\d{8}$")


def build_bundle(answer: Dict[str, Any], header: Optional["Dataset"],
                 uid_seed: Optional[str] = None,
                 made_at: Optional[datetime] = None) -> Dict[str, Any]:
    """answer: POST /xray's JSON answer; header: a DICOM input's header (None for PNG/JPEG);
    uid_seed: what every id derives from (None: new ids); made_at: when the classification was
    made (an aware time), its issue time. The Bundle as JSON-ready dict."""
    ids = _Ids(uid_seed)
    device = device_of(answer)
    if made_at is None and uid_seed is None:
        made_at = datetime.now(timezone.utc)
    issued = (None if made_at is None else
              made_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
    source = _Source(header)
    warning = _warning(answer, device)

    device_id = str(uuid.uuid5(NAMESPACE, f"device\n{device.weights_sha256}"))
    device_ref = {"reference": _url(device_id), "display": device.model_name}
    study = source.imaging_study(ids.make("imaging-study"))
    study_ref = ({"reference": _url(study["id"])} if study is not None
                 else source.study_reference())

    context: Dict[str, Any] = {}
    if source.patient is not None:
        context["subject"] = source.patient
    if source.study_date is not None:
        context["effectiveDateTime"] = source.study_date
    if issued is not None:
        context["issued"] = issued

    positive = set(answer["positive"])
    observations = [
        _observation(ids.make(f"observation\n{finding['label']}"), finding,
                     finding["label"] in positive, context, device_ref, study_ref, warning)
        for finding in answer["findings"]]

    report_id = ids.make("report")
    report: Dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "identifier": [{"system": URI, "value": _url(report_id)}],
        "status": STATUS,
        "category": [{"coding": [RADIOLOGY]}],
        "code": {"coding": [CHEST_XRAY], "text": "Chest X-ray, AI finding probabilities"},
        **context,
        "result": [{"reference": _url(o["id"]), "display": o["code"]["text"]}
                   for o in observations],
        "conclusion": _conclusion(answer, device, warning),
    }
    if source.accession is not None:
        # the order the study was done for, as the EHR knows it: by its accession number
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": source.accession}]
    if study_ref is not None:
        report["imagingStudy"] = [study_ref]

    resources = [report, *observations, _device(device_id, device, warning)]
    if study is not None:
        resources.append(study)
    bundle_id = ids.make("bundle")
    bundle: Dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "identifier": {"system": URI, "value": _url(bundle_id)},
        "type": "collection",
    }
    if issued is not None:
        bundle["timestamp"] = issued
    bundle["entry"] = [{"fullUrl": _url(r["id"]), "resource": r} for r in resources]
    # the codings above are module constants and the subject one dict: the caller's own copy
    return copy.deepcopy(bundle)


class _Ids:
    """Resource ids: uuid5 of (seed, role) with a seed, else uuid4."""

    def __init__(self, seed: Optional[str]) -> None:
        self._seed = seed

    def make(self, role: str) -> str:
        if self._seed is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(NAMESPACE, f"{self._seed}\n{role}"))


class _Source:
    """What the report takes from a DICOM input's header (nothing for PNG/JPEG)."""

    def __init__(self, header: Optional["Dataset"]) -> None:
        def text(keyword: str) -> Optional[str]:
            value = None if header is None else header.get(keyword)
            value = None if value is None else str(value).strip()
            return value or None

        self.study_uid = text("StudyInstanceUID")
        self.series_uid = text("SeriesInstanceUID")
        self.instance_uid = text("SOPInstanceUID")
        self.sop_class = text("SOPClassUID")
        self.modality = text("Modality")
        accession = text("AccessionNumber")
        self.accession = (None if accession is None
                          else {"type": {"coding": [ACCESSION]}, "value": accession})
        study_date = text("StudyDate")
        # a DICOM date as a FHIR date (a time would need a zone the header does not give)
        self.study_date = (None if study_date is None or not _valid_date(study_date)
                           else f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}")
        patient_id = text("PatientID")
        self.patient: Optional[Dict[str, Any]] = None
        if patient_id is not None:
            identifier: Dict[str, Any] = {"value": patient_id}
            issuer = text("IssuerOfPatientID")
            if issuer is not None:
                identifier["assigner"] = {"display": issuer}
            self.patient = {"type": "Patient", "identifier": identifier}

    def study_identifiers(self) -> List[Dict[str, Any]]:
        identifiers: List[Dict[str, Any]] = [
            {"system": DICOM_UID, "value": f"urn:oid:{self.study_uid}"}]
        if self.accession is not None:
            identifiers.append(self.accession)
        return identifiers

    def study_reference(self) -> Optional[Dict[str, Any]]:
        """The study by its Study Instance UID, when there is no ImagingStudy to point to."""
        if self.study_uid is None:
            return None
        return {"type": "ImagingStudy",
                "identifier": {"system": DICOM_UID, "value": f"urn:oid:{self.study_uid}"}}

    def imaging_study(self, resource_id: str) -> Optional[Dict[str, Any]]:
        """The study, series and instance that were read; None without a Study Instance UID
        or a Patient ID (an ImagingStudy must have a subject)."""
        if self.study_uid is None or self.patient is None:
            return None
        study: Dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "id": resource_id,
            "identifier": self.study_identifiers(),
            "status": "available",
            "subject": self.patient,
        }
        if self.study_date is not None:
            study["started"] = self.study_date
        if self.modality is not None:
            modality = {"system": FHIR_SYSTEMS[DCM], "code": self.modality}
            study["modality"] = [modality]
            if self.series_uid is not None:
                series: Dict[str, Any] = {"uid": self.series_uid, "modality": modality}
                if self.instance_uid is not None and self.sop_class is not None:
                    series["instance"] = [{
                        "uid": self.instance_uid,
                        "sopClass": {"system": URI, "code": f"urn:oid:{self.sop_class}"}}]
                study["series"] = [series]
        return study


def _observation(resource_id: str, finding: Mapping[str, Any], positive: bool,
                 context: Mapping[str, Any], device_ref: Dict[str, Any],
                 study_ref: Optional[Dict[str, Any]], warning: Optional[str]) -> Dict[str, Any]:
    label, threshold = finding["label"], finding["threshold"]
    code = finding_code(label)
    coding: Dict[str, Any] = {"system": FHIR_SYSTEMS[code.scheme], "code": code.value,
                              "display": code.meaning}
    if code.scheme == PRIVATE:
        coding["version"] = PRIVATE_VERSION
    observation: Dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": STATUS,
        "category": [{"coding": [IMAGING]}],
        "code": {"coding": [coding], "text": f"{code.meaning} (probability)"},
        **context,
        "device": device_ref,
        "valueQuantity": {"value": finding["probability"], **UNITY},
        "interpretation": [{"coding": [POSITIVE if positive else NEGATIVE]}],
        # the decision threshold: below it negative, at or above it positive
        "referenceRange": [{"high": {"value": threshold, **UNITY},
                            "text": f"Positive at or above {threshold} (the model's decision "
                                    f"threshold for {label})"}],
    }
    if study_ref is not None:
        observation["derivedFrom"] = [study_ref]
    if warning:
        observation["note"] = [{"text": warning}]
    return observation


def _device(resource_id: str, device: Device, warning: Optional[str]) -> Dict[str, Any]:
    resource: Dict[str, Any] = {
        "resourceType": "Device",
        "id": resource_id,
        "identifier": [
            {"system": DICOM_UID, "value": f"urn:oid:{device.uid}"},
            {"system": WEIGHTS_SHA256, "value": device.weights_sha256,
             "type": {"text": "SHA-256 of the model weights"}},
        ],
        "status": "active",
        "manufacturer": device.manufacturer,
        "deviceName": [{"name": device.model_name, "type": "model-name"}],
        "type": {"coding": [PROCESSING_EQUIPMENT], "text": "Chest X-ray classification algorithm"},
        "version": [{"type": {"text": "model"}, "value": device.model_version},
                    {"type": {"text": "service"}, "value": device.service_version}],
    }
    if warning:
        resource["note"] = [{"text": warning}]
    return resource


def _warning(answer: Mapping[str, Any], device: Device) -> Optional[str]:
    """What the model says about itself (the untrained demo: that its findings are meaningless),
    or, for an untrained model that says nothing, that."""
    warning = answer["model"].get("warning")
    if warning:
        return str(warning)
    if not device.trained:
        return f"The model {device.model_name} is untrained: its findings are meaningless."
    return None


def _conclusion(answer: Mapping[str, Any], device: Device, warning: Optional[str]) -> str:
    findings = {f["label"]: f for f in answer["findings"]}
    parts = [f"Preliminary result of an algorithm ({device.model_name}, model version "
             f"{device.model_version}), not verified by a radiologist."]
    if answer["positive"]:
        listed = ", ".join(f"{finding_code(label).meaning} {findings[label]['probability']:.3f} "
                           f"(threshold {findings[label]['threshold']})"
                           for label in answer["positive"])
        parts.append(f"At or above the decision threshold: {listed}.")
    else:
        parts.append(f"None of the {len(findings)} findings is at or above its decision "
                     f"threshold.")
    intended = answer.get("image", {}).get("intended_use", {})
    if intended.get("result") == "forced":
        refusal = intended.get("refusal", {})
        # the refusal's first sentence names the tag and its value; the rest is advice
        reason = str(refusal.get("Message", "")).split(". ")[0]
        parts.append(f"Classified on request although the image is outside the model's "
                     f"intended use ({refusal.get('Code')}: {reason}).")
    if warning:
        parts.append(warning)
    return " ".join(parts)


def _valid_date(da: str) -> bool:
    if not _DA.match(da):
        return False
    try:
        datetime.strptime(da, "%Y%m%d")
    except ValueError:
        return False
    return True


def _url(resource_id: str) -> str:
    return f"urn:uuid:{resource_id}"
