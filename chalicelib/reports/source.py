"""The input DICOM's header elements a report copies: the patient and study it belongs to, and the
instance it describes. An SR joins the input's study (same patient module, same Study Instance
UID, references the source image) and a FHIR report names the study by its UIDs; neither invents
patient data. These elements are patient fields: they are never logged, and an upload job keeps
them (as DICOM JSON) only beside its result, deleted with it."""
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Patient module, General Study module, and what identifies the source instance and its series.
SOURCE_KEYWORDS = (
    # Patient (PS3.3 C.7.1.1)
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "OtherPatientIDsSequence",
    # General Study (C.7.2.1)
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription",
    # the source instance and its series
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality",
    # how it was taken (also in the JSON answer's image member)
    "BodyPartExamined", "ViewPosition", "Laterality", "ImageLaterality",
)


def source_header(header: "Dataset") -> "Dataset":
    """Only the SOURCE_KEYWORDS elements of a decoded DICOM's header."""
    from pydicom.dataset import Dataset
    kept = Dataset()
    for keyword in SOURCE_KEYWORDS:
        if keyword in header:
            kept.add(header[keyword])
    return kept


def to_json(header: Optional["Dataset"]) -> Optional[Dict[str, Any]]:
    """The DICOM JSON model (PS3.18 F.2) of the source elements, for a job record."""
    return None if header is None else source_header(header).to_json_dict()


def from_json(stored: Optional[Dict[str, Any]]) -> Optional["Dataset"]:
    if stored is None:
        return None
    from pydicom.dataset import Dataset
    return Dataset.from_json(stored)
